"""Tessera's Processing algorithms, one per module."""


def all_algorithms():
    """A new instance of every algorithm the provider offers."""
    from .segment_spatial_stats import SegmentSpatialStatsAlgorithm
    from .segment_stats import SegmentStatsAlgorithm

    return [SegmentStatsAlgorithm(), SegmentSpatialStatsAlgorithm()]
