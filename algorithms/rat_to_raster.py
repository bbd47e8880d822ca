"""tessera:rattoraster — RAT columns to a raster, segments coloured by their values."""

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from ..engine.rat.lookup import DATA_TYPES
from .base import TesseraAlgorithm, check_outputs, static_enum
from .layer_loading import PseudocolorStyle, style_output
from .qgis_compat import DOUBLE
from .segment_rat_source import add_segment_rat_parameters, segment_rat_arguments


class RatToRasterAlgorithm(TesseraAlgorithm):
    NAME = "rattoraster"
    DISPLAY_NAME = "RAT columns to raster"
    GROUP = "Raster attribute tables"
    GROUP_ID = "rat"
    HELP = (
        "Puts per-segment values on the map: every pixel of a segment raster gets its "
        "segment's value in chosen columns of a raster attribute table (RAT), one band per "
        "column, in a tiled, compressed GeoTIFF. The RAT is the segment file's own, a separate "
        "GDAL file, or a Zarr RAT store (as written by Per-segment statistics). Data type: "
        "auto writes Int32 when every column is a 32-bit integer column, else Float64 (exact "
        "for every value a RAT holds); Float32 halves the size at float precision. Pixels of "
        "the null id, of ids the RAT has no row for, and of missing values (the missing value "
        "and NaN) are nodata, whose value is the missing value. The segment raster is read "
        "window by window, so rasters larger than memory are fine; the output is written "
        "beside its target and renamed when complete. It is loaded with a colour ramp over "
        "the first column's range."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_segment_rat_parameters(
            self, "Comma-separated names of the numeric columns to map, one band each, e.g. "
            "b1_mean,b1_median.")
        self.add(static_enum("DATA_TYPE", "Data type", DATA_TYPES, DATA_TYPES[0]),
                 "auto: Int32 when every column is a 32-bit integer column, else Float64; "
                 "float32 or float64: that type for every band.", advanced=True)
        self.add(QgsProcessingParameterNumber("MISSING_VALUE", "Missing value", DOUBLE, -9999),
                 "RAT values equal to it (and NaN) are nodata; it is also the nodata value of "
                 "the output (default -9999, the missing value of Per-segment statistics).",
                 advanced=True)
        self.add(QgsProcessingParameterRasterDestination("OUTPUT", "Segment values"),
                 "GeoTIFF with one band per column (named after it).")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Replace an existing output file",
                                               False),
                 "Replace the output's file when it exists already; otherwise that is an error "
                 "and nothing is written. An input is never replaced.")
        self.addOutput(QgsProcessingOutputString("COLUMNS", "Columns mapped"))

    def process(self, parameters, context, feedback):
        from ..engine.rat.to_raster import rat_to_raster

        arguments = segment_rat_arguments(self, parameters, context)
        check_outputs(self, parameters, context, {"OUTPUT": "output raster"},
                      {"SEGMENTS": "segment raster"},
                      self.parameterAsBool(parameters, "OVERWRITE", context))
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        progress, cancelled = self.engine_callbacks(feedback)
        result = rat_to_raster(
            arguments.pop("segments"), output, arguments.pop("columns"),
            missing_value=self.parameterAsDouble(parameters, "MISSING_VALUE", context),
            data_type=self.parameterAsEnumString(parameters, "DATA_TYPE", context) or "auto",
            overwrite=self.parameterAsBool(parameters, "OVERWRITE", context),
            progress=progress, cancelled=cancelled, **arguments)
        low, high = result.ranges[result.columns[0]]
        feedback.pushInfo(f"Wrote {len(result.columns)} band(s) ({result.dtype}) to "
                          f"{result.output} in {result.timings['total']:.2f} s; "
                          f"{result.columns[0]} ranges {low} .. {high}.")
        segments = self.parameterAsRasterLayer(parameters, "SEGMENTS", context)
        style_output(context, output, f"{', '.join(result.columns)} ({segments.name()})",
                     PseudocolorStyle(1, low, high))
        return {"OUTPUT": result.output, "COLUMNS": ",".join(result.columns)}
