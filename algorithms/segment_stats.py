"""tessera:segmentstats — per-segment statistics written to a RAT."""

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..engine.statistics.catalogue import (
    DEFAULT_STATISTICS,
    PERCENTILE_METHODS,
    STATISTICS,
    statistics_help,
)
from .base import raster_source, static_enum
from .qgis_compat import DOUBLE
from .report_output import add_report_parameter, report_path
from .segment_rat_algorithm import SegmentRatAlgorithm


class SegmentStatsAlgorithm(SegmentRatAlgorithm):
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
        self.add_segment_parameters()
        self.add(QgsProcessingParameterRasterLayer("IMAGE", "Image"),
                 "Raster whose values are summarised; same size, grid and CRS as the segments.")
        self.add(QgsProcessingParameterBand("BANDS", "Image bands", None, "IMAGE",
                                            optional=True, allowMultiple=True),
                 "Bands to summarise (default: all); each tile is read once for all of them.")
        self.add(static_enum("STATISTICS", "Statistics", STATISTICS, list(DEFAULT_STATISTICS),
                             multiple=True),
                 statistics_help() + " frac columns: b&lt;band&gt;_frac_&lt;value&gt;.")
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
        self.add_rat_target("Optional CSV with one row per segment: id, then every statistic.")
        self.add_dask_scheduler()
        add_report_parameter(self, "Summary report", "Optional HTML summary, opened in the "
                             "Results Viewer: segment count, and per column the range, mean "
                             "and histogram of the values written (missing values left out). "
                             "Needs matplotlib.")

    def process(self, parameters, context, feedback):
        from ..engine import segment_stats

        arguments = self.segment_arguments(parameters, context)
        html = report_path(self, parameters, context)
        image = raster_source(self, parameters, "IMAGE", context)
        progress, cancelled = self.engine_callbacks(feedback)
        result = segment_stats(
            image=image,
            statistics=self.parameterAsEnumStrings(parameters, "STATISTICS", context),
            bands=self.parameterAsInts(parameters, "BANDS", context) or None,
            percentiles=self.parameterAsString(parameters, "PERCENTILES", context),
            percentile_method=self.parameterAsEnumString(parameters, "PERCENTILE_METHOD",
                                                         context),
            missing_value=self.parameterAsDouble(parameters, "MISSING_VALUE", context),
            progress=progress, cancelled=cancelled,
            scheduler=self.dask_scheduler(parameters, context), **arguments,
        )
        outputs = self.rat_results(result, arguments, feedback)
        if html:
            outputs["OUTPUT_HTML"] = self._report(html, result, arguments, parameters, context)
        return outputs

    def _report(self, path, result, arguments, parameters, context):
        from ..engine.io.raster_io import open_raster
        from ..engine.reports.statistics import segment_stats_report
        from ..engine.segments.pipeline import segment_null_id

        segments = open_raster(arguments["segments"])
        null_id = segment_null_id(segments.GetRasterBand(arguments["segment_band"]))
        segments = None
        own = arguments["output_rat"] is None
        written, _ = segment_stats_report(
            path, arguments["segments"] if own else arguments["output_rat"], result.columns,
            result.segment_count, null_id,
            self.parameterAsDouble(parameters, "MISSING_VALUE", context),
            arguments["segment_band"] if own else 1)
        return written
