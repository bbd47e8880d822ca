"""What ``tessera:segmentstats`` and ``tessera:segmentspatialstats`` share: the
segment raster, the RAT target (segment file, GDAL file or Zarr store), the
optional CSV, their results, and keeping a written GeoTIFF RAT visible to QGIS."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import TesseraAlgorithm, keep_rat_visible_to_qgis, raster_source


class SegmentRatAlgorithm(TesseraAlgorithm):
    """A TesseraAlgorithm that writes one column per result to a segment RAT."""

    def add_segment_parameters(self):
        self.add(QgsProcessingParameterRasterLayer("SEGMENTS", "Segment raster"),
                 "Raster of segment ids (unsigned or non-negative integers).")
        self.add(QgsProcessingParameterBand("SEGMENT_BAND", "Segment band", 1, "SEGMENTS",
                                            optional=True),
                 "Band of the segment raster holding the ids (default 1).", advanced=True)

    def add_rat_target(self, table_help):
        rat = QgsProcessingParameterFileDestination(
            "OUTPUT_RAT", "Output RAT (empty: the segment file's own RAT)",
            "Zarr RAT store (*.zarr);;Erdas Imagine (*.img);;GeoTIFF with .aux.xml (*.tif)",
            optional=True, createByDefault=False)
        self.add(rat, "Empty: the RAT of the segment file. A path ending .zarr: a Zarr RAT store "
                 "(created if missing). Another path: a GDAL file holding the RAT (.img or .tif; "
                 "created if missing).")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Overwrite existing columns", False),
                 "Replace columns of the same names (of the same type); otherwise such columns "
                 "are an error and nothing is written.")
        table = QgsProcessingParameterFileDestination(
            "OUTPUT_TABLE", "Output table", "CSV files (*.csv)", optional=True,
            createByDefault=False)
        self.add(table, table_help)
        self.addOutput(QgsProcessingOutputString("RAT", "RAT written"))
        self.addOutput(QgsProcessingOutputString("COLUMNS", "Columns written"))
        self.addOutput(QgsProcessingOutputNumber("SEGMENT_COUNT", "Segments"))

    def segment_arguments(self, parameters, context):
        """The engine's segments, segment_band, output_rat, overwrite and output_table."""
        return {
            "segments": raster_source(self, parameters, "SEGMENTS", context),
            "segment_band": self.parameterAsInt(parameters, "SEGMENT_BAND", context) or 1,
            "output_rat": self.parameterAsFileOutput(parameters, "OUTPUT_RAT", context) or None,
            "overwrite": self.parameterAsBool(parameters, "OVERWRITE", context),
            "output_table":
                self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context) or None,
        }

    def rat_results(self, result, arguments, feedback):
        """Log the run and return the algorithm's outputs; remember a GDAL RAT that was
        written (see :meth:`postProcessAlgorithm`)."""
        feedback.pushInfo(f"Wrote {len(result.columns)} column(s) for {result.segment_count} "
                          f"segment(s) to {result.target} in {result.timings['total']:.2f} s.")
        self._written_gdal_rat = _gdal_rat_written(arguments)
        outputs = {"RAT": result.target, "COLUMNS": ",".join(result.columns),
                   "SEGMENT_COUNT": int(result.segment_count),
                   # where the RAT is, for the next algorithm of a model
                   "OUTPUT_RAT": arguments["output_rat"] or arguments["segments"]}
        if arguments["output_table"]:
            outputs["OUTPUT_TABLE"] = arguments["output_table"]
            self._table_to_load = arguments["output_table"]
        return outputs

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API)
        if getattr(self, "_written_gdal_rat", None):
            keep_rat_visible_to_qgis(*self._written_gdal_rat, context)
        if getattr(self, "_table_to_load", None):
            from .layer_loading import layer_name, load_on_completion

            load_on_completion(context, self._table_to_load, layer_name(self._table_to_load),
                               "OUTPUT_TABLE", kind="table")
        return {}


def _gdal_rat_written(arguments):
    """``(raster path, band)`` of a GDAL RAT just written (the segment file's own, or a
    separate raster), which QGIS may hold open; None for a Zarr store."""
    from ..engine.io.output_safety import same_file
    from ..engine.rat.tables import is_zarr_target

    target = arguments["output_rat"]
    if target is None or same_file(target, arguments["segments"]):
        return arguments["segments"].split("|")[0], arguments["segment_band"]
    return None if is_zarr_target(target) else (target, 1)
