"""Tessera's engine: plain Python, numpy, numba and GDAL; never QGIS.

The public functions are imported lazily so that ``import tessera.engine``
is cheap and works without numba (each function says what it needs)::

    from tessera.engine import segment_stats
"""

_EXPORTS = {
    "segment_stats": ".segments.statistics",
    "SegmentStatsResult": ".segments.pipeline",
    "zonal_stats": ".zonal.statistics",
    "ZonalStatsResult": ".zonal.statistics",
    "TesseraError": ".errors",
    "CancelledError": ".errors",
    "STATISTICS": ".statistics.catalogue",
    "segment_spatial_stats": ".segments.spatial",
    "SPATIAL_STATISTICS": ".segments.spatial_catalogue",
    "segment_user_stats": ".segments.user_functions",
    "points_to_array": ".segments.points",
    "points_to_mask": ".segments.points",
    "points_bounds": ".segments.points",
    "point_dtype": ".segments.points",
    "global_regression": ".normalization.global_regression",
    "GlobalRegressionResult": ".normalization.global_regression",
    "local_block_adjustment": ".normalization.local_block_adjustment",
    "LocalBlockAdjustmentResult": ".normalization.local_block_adjustment",
    "RatStore": ".rat.store",
    "open_rat": ".rat.tables",
    "copy_rat": ".rat.tools",
    "CopyRatResult": ".rat.tools",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tessera.engine' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
