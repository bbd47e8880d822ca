"""Preparing the engine: compiling its numba kernels once per installation.

numba compiles a kernel the first time it is called with new argument types
and keeps the machine code in its cache (``__pycache__`` beside the engine, or
numba's per-user cache folder when the plugin folder is read-only). A fresh
install or an upgrade therefore spends 10-60 s compiling inside the first
algorithm run. :func:`prepare` does that work up front, on tiny rasters, for
the types the algorithms use most, and leaves a stamp (plugin version, numba
version, Python version) in the cache folder; :func:`is_prepared` reads it.

Plain Python: the QGIS side (``desktop/engine_preparation.py``) runs
:func:`prepare` in a background task; algorithms ask :func:`is_prepared` to
say "compiling" in their progress text instead of hanging silently.
"""

import glob
import os
import sys
import tempfile
import threading

import numpy as np

from .errors import CancelledError

STAMP_NAME = "tessera-engine.stamp"
_preparing = threading.Event()


def cache_folder():
    """The folder where numba caches the engine's kernels (imports numba)."""
    from .statistics.kernels import zone_statistics

    return zone_statistics.stats.cache_path


def stamp_text(version):
    import numba

    return (f"tessera {version}\nnumba {numba.__version__}\n"
            f"python {sys.version_info[0]}.{sys.version_info[1]}\n")


def is_prepared(version):
    """Whether :func:`prepare` completed for this plugin, numba and Python version."""
    try:
        with open(os.path.join(cache_folder(), STAMP_NAME), encoding="utf-8") as stream:
            return stream.read() == stamp_text(version)
    except (OSError, ImportError):
        return False


def kernels_cached():
    """Whether numba's cache holds statistics kernels compiled from the current sources
    (so a run outside the desktop, where :func:`prepare` never ran, is not a first run)."""
    from .statistics import kernels as stat_kernels

    try:
        source = os.path.getmtime(stat_kernels.__file__)
        module = os.path.splitext(os.path.basename(stat_kernels.__file__))[0]
        indexes = glob.glob(os.path.join(cache_folder(), f"{module}.*.nbi"))
        return any(os.path.getmtime(index) >= source for index in indexes)
    except OSError:
        return False


def is_preparing():
    """Whether :func:`prepare` is running in this process."""
    return _preparing.is_set()


def prepare(version, progress=None, cancelled=None):
    """Compile the kernels (loading them from the cache when they are there).

    ``progress(fraction, message)`` and ``cancelled()`` as everywhere in the
    engine; a cancel stops between steps (a kernel being compiled finishes)
    and raises :class:`CancelledError`, leaving no stamp. Returns the stamp path.
    """
    progress = progress or (lambda fraction, message="": None)
    cancelled = cancelled or (lambda: False)
    steps = _steps()
    _preparing.set()
    try:
        with tempfile.TemporaryDirectory(prefix="tessera-prepare-") as folder:
            files = _sample_files(folder)
            for index, (message, step) in enumerate(steps):
                if cancelled():
                    raise CancelledError()
                progress(index / len(steps), message)
                step(files, folder)
        progress(1.0, "The engine is ready")
        return _write_stamp(version)
    finally:
        _preparing.clear()


def _write_stamp(version):
    """The stamp beside numba's cache files; None when it cannot be written (the kernels
    are cached all the same; the next start only checks them again)."""
    stamp = os.path.join(cache_folder(), STAMP_NAME)
    try:
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w", encoding="utf-8") as stream:
            stream.write(stamp_text(version))
    except OSError:
        return None
    return stamp


def _sample_files(folder):
    """Two small overlapping 3-band uint16 scenes and a uint32 segmentation of the first."""
    from .io.raster_io import write_array

    rows = cols = 48
    y, x = np.mgrid[0:rows, 0:cols]
    files = {}
    for index, (gain, col0) in enumerate(((1.0, 0), (1.2, 24))):
        bands = np.stack([(np.sin(x / 7.0 + b) + 2.0) * 400 * gain + y for b in range(3)])
        geotransform = (500000.0 + 10 * col0, 10.0, 0.0, 5600000.0, 0.0, -10.0)
        files[f"scene_{index}"] = write_array(
            os.path.join(folder, f"scene_{index}.tif"), bands.astype(np.uint16), geotransform,
            _utm_wkt(), nodata=0)
    segments = (y // 6) * (cols // 6) + x // 6 + 1
    files["segments"] = write_array(os.path.join(folder, "segments.tif"),
                                    segments.astype(np.uint32),
                                    (500000.0, 10.0, 0.0, 5600000.0, 0.0, -10.0), _utm_wkt())
    return files


def _utm_wkt():
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def _segment_stats(files, folder):
    from .segments.statistics import segment_stats
    from .statistics.catalogue import STATISTICS

    statistics = [s for s in STATISTICS if s != "frac"]  # its kernel code is compiled all the same
    for method in ("inverted_cdf", "linear"):
        segment_stats(files["segments"], files["scene_0"], statistics=statistics,
                      percentiles=(10, 90), percentile_method=method,
                      output_rat=os.path.join(folder, f"stats_{method}.img"), overwrite=True)


def _spatial_stats(files, folder):
    from .segments.spatial import segment_spatial_stats
    from .segments.spatial_catalogue import SPATIAL_STATISTICS

    for connectivity in (4, 8):
        segment_spatial_stats(files["segments"], files["scene_0"], statistics=SPATIAL_STATISTICS,
                              connectivity=connectivity, max_lag=2,
                              output_rat=os.path.join(folder, f"spatial_{connectivity}.img"),
                              overwrite=True)


def _zonal_stats(files, folder):
    from osgeo import ogr

    from .statistics.catalogue import STATISTICS
    from .zonal.statistics import zonal_stats

    polygons = [(1, "POLYGON ((500050 5599950, 500300 5599950, 500300 5599700, "
                    "500050 5599950))"),
                (2, "POLYGON ((500100 5599900, 500400 5599900, 500400 5599600, "
                    "500100 5599600, 500100 5599900))")]
    shapes = [(fid, ogr.CreateGeometryFromWkt(wkt)) for fid, wkt in polygons]
    for rule in ("centre", "fraction"):
        zonal_stats(shapes, files["scene_0"], statistics=[s for s in STATISTICS if s != "frac"],
                    bands=(1, 2), percentiles=(50,), pixel_rule=rule)


def _normalization(files, folder):
    from .normalization.global_regression import global_regression
    from .normalization.local_block_adjustment import local_block_adjustment

    scenes = [files["scene_0"], files["scene_1"]]
    result = global_regression(scenes, os.path.join(folder, "global"))
    local_block_adjustment(sorted(result.outputs), os.path.join(folder, "local"), blocks=4)


def _steps():
    steps = [("Compiling per-segment statistics", _segment_stats),
             ("Compiling per-segment spatial statistics", _spatial_stats),
             ("Compiling radiometric normalization", _normalization)]
    try:
        import shapely  # noqa: F401 (zonal statistics need it)
    except ImportError:
        return steps
    return steps[:2] + [("Compiling zonal statistics", _zonal_stats)] + steps[2:]
