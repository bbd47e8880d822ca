"""Tessera's Processing algorithms, one per module."""


def all_algorithms():
    """A new instance of every algorithm the provider offers."""
    from .segment_stats import SegmentStatsAlgorithm
    from .zonal_stats import ZonalStatsAlgorithm

    return [SegmentStatsAlgorithm(), ZonalStatsAlgorithm()]
