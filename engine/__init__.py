"""Tessera's engine: plain Python, numpy, numba and GDAL; never QGIS.

The public functions are imported lazily so that ``import tessera.engine``
is cheap and works without numba (each function says what it needs)::

    from tessera.engine import segment_stats
"""

_EXPORTS = {
    "segment_stats": ".segment_statistics",
    "SegmentStatsResult": ".segment_statistics",
    "zonal_stats": ".zonal_statistics",
    "ZonalStatsResult": ".zonal_statistics",
    "TesseraError": ".errors",
    "CancelledError": ".errors",
    "STATISTICS": ".statistics",
    "segment_spatial_stats": ".segment_spatial",
    "SPATIAL_STATISTICS": ".spatial_statistics",
    "segment_user_stats": ".segment_user",
    "points_to_array": ".segment_points",
    "points_to_mask": ".segment_points",
    "points_bounds": ".segment_points",
    "point_dtype": ".segment_points",
    "global_regression": ".global_normalization",
    "GlobalRegressionResult": ".global_normalization",
    "local_block_adjustment": ".local_normalization",
    "LocalBlockAdjustmentResult": ".local_normalization",
    "RatStore": ".rat_store",
    "open_rat": ".rat",
    "copy_rat": ".rat_tools",
    "CopyRatResult": ".rat_tools",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tessera.engine' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
