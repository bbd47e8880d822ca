"""RAT columns to a raster: every pixel gets its segment's value.

    from tessera.engine.rat.to_raster import rat_to_raster
    rat_to_raster("segments.tif", "means.tif", ["b1_mean", "b1_median"])

The RAT (the segment file's own, a separate GDAL file or a Zarr store) is
read block by block into a lookup table indexed by id
(:mod:`tessera.engine.rat.lookup`); the segment raster is then read window by window and
every window written to a tiled, compressed GeoTIFF with one band per
column. Pixels of the null id, of ids past the RAT's end, and of missing
values (the missing value, NaN) are nodata. The GeoTIFF is written to a
temporary file beside the output and renamed when complete: a failed or
cancelled run leaves no half-written output and never touches an input.
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal

from ..errors import TesseraError
from ..io.raster_io import (
    TileReader,
    band_dtype,
    create_raster,
    get_band,
    open_raster,
    plan_windows,
    raster_name,
)
from ..normalization.corrected_output import compression_options
from ..progress import Progress
from ..segments.pipeline import segment_null_id
from .lookup import (
    check_nodata,
    lookup_dtype,
    numeric_columns,
    open_segment_rat,
    read_lookup,
)
from .tables import is_zarr_target

#: Pixels per window (a few tens of MB of ids and values).
WINDOW_PIXELS = 1 << 22


@dataclass
class RatRasterResult:
    """What :func:`rat_to_raster` wrote: one band per column, in order."""

    output: str
    columns: list
    dtype: str
    nodata: float
    ranges: dict  # column -> (min, max) of its valid values, (None, None) when none
    timings: dict = field(default_factory=dict)


def rat_to_raster(segments, output, columns=None, *, rat=None, segment_band=1, rat_band=1,
                  missing_value=-9999, data_type="auto", overwrite=False, window_size=None,
                  progress=None, cancelled=None) -> RatRasterResult:
    """Write ``columns`` of a segmentation's RAT as bands of the GeoTIFF ``output``.

    ``rat`` None reads the RAT of band ``segment_band`` of ``segments``; a
    ``.zarr`` path (or ``s3://`` URL) a Zarr RAT store; another path the RAT
    of band ``rat_band`` of that GDAL file. ``columns`` (names or a
    comma-separated string; empty: every numeric column) must be numeric.
    ``data_type`` ``auto`` writes Int32 when every column is a 32-bit integer
    column, else Float64; ``float32`` or ``float64`` force the type. RAT
    values equal to ``missing_value`` (and NaN) become nodata, whose value is
    ``missing_value``. An existing ``output`` is replaced only with ``overwrite``; it is
    written under a temporary name beside it and renamed when complete.
    """
    started = time.perf_counter()
    reporter = Progress(progress, cancelled)
    output = os.fspath(output)
    seg_ds = open_raster(segments)
    seg_band = get_band(seg_ds, segment_band, "segment raster")
    if band_dtype(seg_band).kind not in "iu":
        raise TesseraError(f"The segment raster {raster_name(seg_ds)} holds "
                           f"{band_dtype(seg_band)} values; segment ids must be integers.")
    _check_output(output, raster_name(seg_ds), rat, overwrite)
    null_id = segment_null_id(seg_band)
    with open_segment_rat(seg_ds, segment_band, rat, rat_band) as table:
        chosen = numeric_columns(table, columns or _all_numeric(table))
        dtype = lookup_dtype(table, chosen, data_type)
        nodata = check_nodata(missing_value, dtype)
        reporter.phase(0.0, 0.1, "Reading the RAT")
        lookup = read_lookup(table, chosen, dtype, nodata, null_id, missing_value, reporter)
    from ..io.output_safety import Publication, TargetLock

    with TargetLock(output, cancelled=cancelled), Publication() as publication:
        temporary = publication.add(output, companions=(".aux.xml",))
        _write(seg_ds, segment_band, temporary, lookup, dtype, window_size, reporter)
    timings = {"total": time.perf_counter() - started}
    return RatRasterResult(output, chosen, dtype.name, float(nodata), lookup.ranges, timings)


def _all_numeric(table):
    return [c for c in table.column_names()
            if table.column_kind(c) != "string" and table.column_width(c) == 1]


def _write(seg_ds, segment_band, path, lookup, dtype, window_size, reporter):
    from .kernels import lookup_tile

    bands = len(lookup.columns)
    options = compression_options(dtype) + ["NUM_THREADS=ALL_CPUS", "INTERLEAVE=BAND"]
    out = create_raster(path, seg_ds.RasterXSize, seg_ds.RasterYSize, bands, dtype,
                        seg_ds.GetGeoTransform(), seg_ds.GetProjection(), lookup.nodata,
                        options=options)
    for number, name in enumerate(lookup.columns, start=1):
        out.GetRasterBand(number).SetDescription(name)
    windows = plan_windows(seg_ds, segment_band, target_pixels=WINDOW_PIXELS,
                           window_size=window_size, also=[(out, 1)])
    total = sum(w.xsize * w.ysize for w in windows)
    done = 0
    reporter.phase(0.1, 1.0, f"Writing {bands} band(s)")
    with TileReader([(seg_ds, [segment_band], None)], windows) as reader:
        for window, (ids,) in reader:
            reporter.check()
            values = np.empty((bands, window.ysize, window.xsize), dtype)
            lookup_tile(ids[0], lookup.table, values)
            for number, plane in enumerate(values, start=1):
                if out.GetRasterBand(number).WriteArray(plane, window.xoff, window.yoff) != 0:
                    raise TesseraError(f"Writing {path} failed: {gdal.GetLastErrorMsg()}")
            out.FlushCache()  # compress this strip now: GDAL's cache would keep it all
            done += window.xsize * window.ysize
            reporter.update(done / total)
    out.FlushCache()
    out = None


def _check_output(output, segments, rat, overwrite):
    from ..io.output_safety import check_targets

    if not output.lower().endswith((".tif", ".tiff")):
        raise TesseraError(f"The output {output} must be a GeoTIFF: give a name ending .tif.")
    rat_file = None if rat in (None, "") or is_zarr_target(rat) else rat
    check_targets([(output, "output raster")],
                  [(segments, "segment raster"), (rat_file, "RAT file")], overwrite)
