"""tessera:segmentstats — per-segment statistics written to a RAT."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..engine.statistics import DEFAULT_STATISTICS, PERCENTILE_METHODS, STATISTICS
from .base import TesseraAlgorithm, keep_rat_visible_to_qgis, raster_source, static_enum
from .qgis_compat import DOUBLE


class SegmentStatsAlgorithm(TesseraAlgorithm):
    NAME = "segmentstats"
    DISPLAY_NAME = "Per-segment statistics"
    GROUP = "Segments"
    GROUP_ID = "segments"
    HELP = (
        "Computes statistics of an image for every segment of a segmentation raster (one "
        "integer id per pixel, on the same grid as the image) and writes them as columns of a "
        "raster attribute table (RAT): the segment file's own RAT, a separate GDAL file, or a "
        "Zarr RAT store. Statistics are exact (median, mode and percentiles included) for "
        "integer and float images; image nodata and NaN pixels are ignored. The segment band's "
        "nodata value (else 0) is the null id, whose row is left untouched. Columns are named "
        "b&lt;band&gt;_&lt;statistic&gt; and b&lt;band&gt;_p&lt;percentile&gt; (b1_mean, "
        "b2_p25). Segments without a valid pixel get the missing value and a pixcount of 0. "
        "Both rasters are read tile by tile, so rasters larger than memory are fine."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add(QgsProcessingParameterRasterLayer("SEGMENTS", "Segment raster"),
                 "Raster of segment ids (unsigned or non-negative integers).")
        self.add(QgsProcessingParameterBand("SEGMENT_BAND", "Segment band", 1, "SEGMENTS",
                                            optional=True),
                 "Band of the segment raster holding the ids (default 1).", advanced=True)
        self.add(QgsProcessingParameterRasterLayer("IMAGE", "Image"),
                 "Raster whose values are summarised; same size, grid and CRS as the segments.")
        self.add(QgsProcessingParameterBand("BANDS", "Image bands", None, "IMAGE",
                                            optional=True, allowMultiple=True),
                 "Bands to summarise (default: all); each tile is read once for all of them.")
        self.add(static_enum("STATISTICS", "Statistics", STATISTICS, list(DEFAULT_STATISTICS),
                             multiple=True),
                 "pixcount: valid pixels; min, max, sum, mean; stddev and variance "
                 "(population); range; median (percentile 50 by the percentile method); mode "
                 "and minority (ties to the smallest value); variety (distinct values). From "
                 "qgis_process: STATISTICS=mean,median.")
        self.add(QgsProcessingParameterString("PERCENTILES", "Percentiles", "", optional=True),
                 "Comma-separated percentiles in 0..100, e.g. 25,75 or 2.5,97.5; column "
                 "b&lt;band&gt;_p&lt;p&gt;.")
        method = static_enum("PERCENTILE_METHOD", "Percentile method", PERCENTILE_METHODS,
                             PERCENTILE_METHODS[0])
        self.add(method, "inverted_cdf: the smallest pixel value with at least p% of the "
                 "pixels at or below it (an actual value; integer column for integer images). "
                 "linear: numpy's default interpolation, as rasterstats and QGIS.",
                 advanced=True)
        self.add(QgsProcessingParameterNumber(
            "MISSING_VALUE", "Missing value", DOUBLE, -9999),
            "Written for segments without a valid pixel (pixcount is 0 then).", advanced=True)
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
        self.add(table, "Optional CSV with one row per segment: id, then every statistic.")
        self.addOutput(QgsProcessingOutputString("RAT", "RAT written"))
        self.addOutput(QgsProcessingOutputString("COLUMNS", "Columns written"))
        self.addOutput(QgsProcessingOutputNumber("SEGMENT_COUNT", "Segments"))

    def process(self, parameters, context, feedback):
        from ..engine import segment_stats

        segments = raster_source(self, parameters, "SEGMENTS", context)
        image = raster_source(self, parameters, "IMAGE", context)
        output_rat = self.parameterAsFileOutput(parameters, "OUTPUT_RAT", context) or None
        output_table = self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context) or None
        progress, cancelled = self.engine_callbacks(feedback)
        segment_band = self.parameterAsInt(parameters, "SEGMENT_BAND", context) or 1
        result = segment_stats(
            segments, image,
            statistics=self.parameterAsEnumStrings(parameters, "STATISTICS", context),
            bands=self.parameterAsInts(parameters, "BANDS", context) or None,
            percentiles=self.parameterAsString(parameters, "PERCENTILES", context),
            percentile_method=self.parameterAsEnumString(parameters, "PERCENTILE_METHOD",
                                                         context),
            missing_value=self.parameterAsDouble(parameters, "MISSING_VALUE", context),
            output_rat=output_rat,
            overwrite=self.parameterAsBool(parameters, "OVERWRITE", context),
            segment_band=segment_band,
            output_table=output_table,
            progress=progress, cancelled=cancelled,
        )
        feedback.pushInfo(f"Wrote {len(result.columns)} column(s) for {result.segment_count} "
                          f"segment(s) to {result.target} in {result.timings['total']:.2f} s.")
        self._written_own_rat = (segments, segment_band) if output_rat is None else None
        outputs = {"RAT": result.target, "COLUMNS": ",".join(result.columns),
                   "SEGMENT_COUNT": int(result.segment_count)}
        if output_table:
            outputs["OUTPUT_TABLE"] = output_table
        return outputs

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API)
        if getattr(self, "_written_own_rat", None):
            keep_rat_visible_to_qgis(*self._written_own_rat, context)
        return {}
