"""Tessera's Processing algorithms, one per module."""


def all_algorithms():
    """A new instance of every algorithm the provider offers."""
    from .copy_rat import CopyRatAlgorithm
    from .export_rat import ExportRatAlgorithm
    from .global_regression import GlobalRegressionAlgorithm
    from .local_block_adjustment import LocalBlockAdjustmentAlgorithm
    from .rat_to_raster import RatToRasterAlgorithm
    from .segment_polygons import SegmentPolygonsAlgorithm
    from .segment_spatial_stats import SegmentSpatialStatsAlgorithm
    from .segment_stats import SegmentStatsAlgorithm
    from .zonal_stats import ZonalStatsAlgorithm

    return [SegmentStatsAlgorithm(), SegmentSpatialStatsAlgorithm(), ExportRatAlgorithm(),
            CopyRatAlgorithm(), ZonalStatsAlgorithm(), GlobalRegressionAlgorithm(),
            LocalBlockAdjustmentAlgorithm(), RatToRasterAlgorithm(),
            SegmentPolygonsAlgorithm()]
