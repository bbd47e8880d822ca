"""tessera:segmentspatialstats — per-segment spatial statistics written to a RAT."""

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..engine.segments.spatial_catalogue import (
    DEFAULT_SPATIAL_STATISTICS,
    MAX_LAG_LIMIT,
    SPATIAL_STATISTICS,
)
from .base import raster_source, static_enum
from .qgis_compat import DOUBLE, INTEGER
from .segment_rat_algorithm import SegmentRatAlgorithm

CONNECTIVITY_OPTIONS = ["4", "8"]


class SegmentSpatialStatsAlgorithm(SegmentRatAlgorithm):
    NAME = "segmentspatialstats"
    DISPLAY_NAME = "Per-segment spatial statistics"
    GROUP = "Segments"
    GROUP_ID = "segments"
    HELP = (
        "Computes statistics of where each segment's pixels are: centroid, bounding box, area, "
        "perimeter, edge pixel count, and semivariograms of an image's values inside the "
        "segment. They are written as columns of a raster attribute table (RAT): the segment "
        "file's own RAT, a separate GDAL file, or a Zarr RAT store, like Per-segment "
        "statistics. Coordinates, areas and lengths are in the map units of the segment "
        "raster. The segment band's nodata value (else 0) is the null id, whose row is left "
        "untouched. Rasters are read tile by tile and every statistic is accumulated as the "
        "tiles pass, so even a segment covering the whole raster needs little memory."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add_segment_parameters()
        self.add(QgsProcessingParameterRasterLayer("IMAGE", "Image", optional=True),
                 "Raster whose values the variograms use; same size, grid and CRS as the "
                 "segments. Needed only for variogram and diagonalrms.")
        self.add(QgsProcessingParameterBand("BAND", "Image band", 1, "IMAGE", optional=True),
                 "Band of the image the variograms use (default 1). Its nodata and NaN pixels "
                 "are left out of every pair.")
        self.add(static_enum("STATISTICS", "Statistics", SPATIAL_STATISTICS,
                             list(DEFAULT_SPATIAL_STATISTICS), multiple=True),
                 "centroid: centroid_x, centroid_y, mean map coordinates of the "
                 "pixel centres. bbox: xmin, ymin, xmax, ymax, the map extent of the pixels "
                 "(outer edges). area: pixel count x pixel area. perimeter: length of the pixel "
                 "sides facing other segments or the raster border (holes included). "
                 "edgepixels: edge_pixels, pixels with a neighbour outside the segment (see "
                 "Connectivity). variogram: gamma_&lt;k&gt; = half the mean squared difference "
                 "of all pixel pairs whose centre distance is within half a pixel of k pixels, "
                 "k = 1..maximum lag, all directions. diagonalrms: drms_&lt;k&gt;, pyshepseg's "
                 "variogram numbers (root mean squared difference over down-right diagonal "
                 "offsets only, binned by the floor of the distance). From qgis_process: "
                 "STATISTICS=centroid,area.")
        self.add(QgsProcessingParameterNumber(
            "MAX_LAG", "Maximum lag (pixels)", INTEGER, 5,
            minValue=1, maxValue=MAX_LAG_LIMIT),
            "Largest lag of the variograms, a whole number of pixels: one column per lag "
            "1..maximum (2.5 is refused, not rounded).")
        connectivity = static_enum("CONNECTIVITY", "Edge pixel connectivity",
                                   CONNECTIVITY_OPTIONS, "8")
        self.add(connectivity, "8: a pixel is an edge pixel when any of its 8 neighbours lies "
                 "outside the segment; 4: only its 4 side neighbours count. The raster border "
                 "counts as outside.")
        self.add(QgsProcessingParameterNumber(
            "MISSING_VALUE", "Missing value", DOUBLE, -9999),
            "Written for ids without pixels (centroid, bbox) and for variogram lags without "
            "a pair of valid pixels; area, perimeter and edge_pixels are 0 then.",
            advanced=True)
        self.add_rat_target("Optional CSV with one row per segment: id, then every column.")
        self.add_dask_scheduler()

    def process(self, parameters, context, feedback):
        from ..engine import segment_spatial_stats

        arguments = self.segment_arguments(parameters, context)
        image = None
        if parameters.get("IMAGE"):
            image = raster_source(self, parameters, "IMAGE", context)
        progress, cancelled = self.engine_callbacks(feedback)
        result = segment_spatial_stats(
            image=image,
            statistics=self.parameterAsEnumStrings(parameters, "STATISTICS", context),
            band=self.parameterAsInt(parameters, "BAND", context) or 1,
            # as given: the engine refuses 2.5 rather than rounding it to 3 (parameterAsInt)
            max_lag=self.parameterAsDouble(parameters, "MAX_LAG", context),
            connectivity=int(self.parameterAsEnumString(parameters, "CONNECTIVITY", context)),
            missing_value=self.parameterAsDouble(parameters, "MISSING_VALUE", context),
            progress=progress, cancelled=cancelled,
            scheduler=self.dask_scheduler(parameters, context), **arguments,
        )
        return self.rat_results(result, arguments, feedback)
