"""Local block adjustment: block-mean maps correcting local brightness differences.

    from tessera.engine import local_block_adjustment
    result = local_block_adjustment(["a_Global.tif", "b_Global.tif"], "out/", blocks=100,
                                    save_block_maps="out/maps")

A block grid covers the union of the images (:mod:`tessera.engine.normalization.block_maps`). Each
image's block means (valid pixels whose centres fall in a block, summed
window by window) form its local map; the reference map is their
NaN-ignoring mean. Both are interpolated bilinearly between block centres at
every pixel centre, and each pixel is corrected towards the reference: gamma
``α·P^γ`` with ``γ = ln(M_ref)/ln(M_local)`` (default) or linear
``P·M_ref/M_local``. Where values ≤ 0 occur, one offset per image and band
shifts pixels and means before the gamma correction, so results never
depend on the windowing. The contract is ``shared/design/NORMALIZATION.md``.
"""

import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..dependencies import require
from ..errors import TesseraError
from ..io.raster_io import same_crs
from ..progress import Progress
from .corrected_output import OutputOptions
from .image_set import open_image_set, output_dtype_for, output_paths
from .run_frame import normalization_run, statistics_runner

METHODS = ("gamma", "linear")
LOCAL_SUFFIX = "_Local"
REFERENCE_MAP_NAME = "reference_block_map.tif"
LOCAL_MAP_SUFFIX = "_local_block_map.tif"


@dataclass
class LocalBlockAdjustmentResult:
    """What :func:`local_block_adjustment` computed and wrote."""

    outputs: list
    names: list
    grid: object  # BlockGrid
    reference_map: np.ndarray  # (bands, rows, cols)
    local_maps: dict  # name -> (bands, rows, cols)
    offsets: dict  # name -> [offset per band]
    means_before: dict
    means_after: dict
    block_map_files: list = field(default_factory=list)
    profile_plot: str = None
    clamped: dict = field(default_factory=dict)  # name -> share of valid values clamped
    timings: dict = field(default_factory=dict)


def local_block_adjustment(inputs, output_folder, blocks=100, block_rows=None, block_cols=None,
                           blocks_from_variation=False, alpha=1.0, method="gamma",
                           valid_threshold=0.001, save_block_maps=None, load_reference_map=None,
                           vector_mask=None, mask_mode="include", mask_field=None,
                           output_dtype=None, cog=False, nodata=None, profile_plot=None,
                           threads=None, window_size=None, progress=None, cancelled=None,
                           log=None, overwrite=False, scheduler=None):
    """Correct ``inputs`` (paths) into ``output_folder`` by local block adjustment.

    The grid: ``block_rows`` x ``block_cols`` when given, else derived from
    the coefficient of variation of band 1 (``blocks_from_variation``), else
    about ``blocks`` blocks per image; never more block rows or columns than
    the images have pixels. A loaded reference map
    (``load_reference_map``, a GeoTIFF saved by an earlier run) fixes the grid
    and the reference; new images are brought to it (one image is then
    enough). ``valid_threshold``: the fraction of a block's area that valid
    pixels must cover for its mean to count. ``method`` "gamma" (``alpha``
    multiplies the result) or "linear". ``save_block_maps``: a folder for
    the reference and local maps. The vector mask limits the pixels feeding
    the block means; every pixel is corrected.

    ``scheduler``: None (this machine's threads), ``"local"``, a Dask scheduler address or
    a ``distributed.Client`` (block sums per image and run of windows, corrections per
    image and run of windows as tasks; see :func:`.global_regression.global_regression`);
    with the same ``threads`` the results are the same bits either way.

    Every output is checked before any work (never an input, never an existing
    file unless ``overwrite``), written beside its target, read back, and
    published together with the others only when all were written.
    Returns a :class:`LocalBlockAdjustmentResult`.
    """
    require("numba", purpose="Local block adjustment")
    from .outputs import normalization_inputs

    started = time.perf_counter()
    say = log or (lambda message: None)
    reporter = Progress(progress, cancelled)
    image_set = open_image_set(inputs, 1 if load_reference_map else 2, nodata)
    dtype = output_dtype_for(image_set, output_dtype)
    outputs = output_paths(output_folder, image_set, LOCAL_SUFFIX)
    if method not in METHODS:
        raise TesseraError(f"Unknown correction method '{method}'; use 'gamma' or 'linear'.")
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise TesseraError(f"Alpha must be a finite number > 0; got {alpha}.")
    valid_threshold = float(valid_threshold)
    if not 0 <= valid_threshold <= 1:
        raise TesseraError(f"The valid-pixel threshold must be within 0..1; got "
                           f"{valid_threshold}.")
    if (block_rows is None) != (block_cols is None):
        raise TesseraError("Give both block rows and block columns, or neither.")
    if block_rows is not None and (int(block_rows) < 1 or int(block_cols) < 1):
        raise TesseraError(f"The block grid must have at least 1 row and 1 column; got "
                           f"{block_rows} x {block_cols}.")
    if profile_plot:
        require("matplotlib", purpose="The spectral profile plot")
    map_files = block_map_paths(save_block_maps, image_set.names)
    targets = [(path, "output image") for path in outputs]
    targets += [(path, "block map") for path in map_files]
    targets.append((profile_plot, "profile plot"))
    inputs = normalization_inputs(image_set, vector_mask, reference_map=load_reference_map)
    folders = [(output_folder, "output folder"), (save_block_maps, "block map folder")]
    with normalization_run("Local block adjustment", image_set,
                           (targets, inputs, folders, overwrite, say, cancelled),
                           (vector_mask, mask_mode, mask_field), scheduler, threads,
                           reporter) as (run, client, threads, masks):
        runner = statistics_runner(client, "tessera-block-sums")
        if load_reference_map:
            grid, loaded_reference = _loaded_reference(load_reference_map, image_set, say)
        else:
            grid, loaded_reference = _new_grid(image_set, masks, blocks, block_rows,
                                               block_cols, blocks_from_variation, reporter,
                                               threads, window_size, say, runner), None
        options = OutputOptions(dtype, image_set.nodata, cog, threads, window_size,
                                profile_plot)
        return _adjust(run, image_set, outputs, options, grid, loaded_reference, masks,
                       (method, alpha, valid_threshold), map_files, reporter, say, started,
                       client, runner)


def block_map_paths(folder, names):
    """The block map files saved to ``folder``: the reference map, then one per image."""
    if not folder:
        return []
    folder = os.fspath(folder)
    return [os.path.join(folder, REFERENCE_MAP_NAME)] + [
        os.path.join(folder, f"{name}{LOCAL_MAP_SUFFIX}") for name in names]


def _loaded_reference(path, image_set, say):
    """(grid, reference map) of a saved reference map that fits the images."""
    from .block_maps import read_block_map

    reference, grid, crs = read_block_map(path)
    if reference.shape[0] != image_set.bands:
        raise TesseraError(f"The reference map {path} has {reference.shape[0]} band(s) but "
                           f"the images have {image_set.bands}.")
    if not same_crs(crs, image_set.crs_wkt):
        raise TesseraError(f"The reference map {path} and the images have different "
                           "coordinate reference systems.")
    outside = [i.name for i in image_set.images if not grid.covers(i)]
    if outside:
        raise TesseraError(f"The reference map {path} does not cover {', '.join(outside)}: "
                           "images must lie within its extent.")
    say(f"Reference map {path}: {grid.rows} x {grid.cols} blocks.")
    return grid, reference


def _new_grid(image_set, masks, blocks, block_rows, block_cols, from_variation, reporter,
              threads, window_size, say, runner):
    """The block grid over the union of the images, checked against their pixels."""
    from .block_maps import BlockGrid, check_grid, grid_from_target, grid_from_variation
    from .overlap import find_overlaps

    if not find_overlaps(image_set.images):
        raise TesseraError("No two input images overlap: local block adjustment brings "
                           "overlapping images to a common reference.")
    bounds = image_set.union_bounds()
    if block_rows is not None:
        rows, cols = int(block_rows), int(block_cols)
    elif from_variation:
        reporter.phase(0.0, 0.1, "Coefficient of variation of band 1")
        rows, cols = grid_from_variation(_variation(image_set, masks, reporter, threads,
                                                    window_size, runner))
    else:
        rows, cols = grid_from_target(bounds, len(image_set.images), int(blocks))
    check_grid(rows, cols, image_set, _pieces(threads, len(image_set.images)))
    say(f"Block grid: {rows} rows x {cols} columns over the union of the images.")
    return BlockGrid(bounds, rows, cols)


def _pieces(threads, images):
    """Parts each image's block sums are split into (one partial sum each)."""
    return max(1, math.ceil(threads / max(1, images)))


def _adjust(run, image_set, outputs, options, grid, loaded_reference, masks, correction,
            map_files, reporter, say, started, client=None, runner=None):
    """Block means, correction and publication (the body of
    :func:`local_block_adjustment`, its outputs checked and locked by ``run``;
    ``correction``: method, alpha, valid threshold)."""
    from .block_maps import block_means, reference_map, write_block_map
    from .corrected_output import write_normalized

    method, alpha, valid_threshold = correction
    threads, window_size = options.threads, options.window_size
    timings = {}
    images, names, bands = image_set.images, image_set.names, image_set.bands
    reporter.phase(0.1, 0.4, "Block means")
    sums, counts, minima = _block_sums(images, image_set.nodata, masks, grid, reporter, threads,
                                       window_size, runner or statistics_runner(None, ""))
    local_maps = {}
    for index, image in enumerate(images):
        pixel_area = image.pixel_size[0] * image.pixel_size[1]
        local_maps[image.name] = block_means(sums[index], counts[index], grid, pixel_area,
                                             valid_threshold)
    reference = loaded_reference if loaded_reference is not None else reference_map(
        list(local_maps.values()))
    timings["block_maps"] = time.perf_counter() - started

    offsets = {}
    for index, name in enumerate(names):
        offsets[name] = [0.0] * bands
        if method != "gamma":
            continue
        for band in range(bands):
            lowest = min(minima[index][band], _nanmin(local_maps[name][band]),
                         _nanmin(reference[band]))
            if lowest <= 0:
                offsets[name][band] = 1.0 - lowest
        if any(offsets[name]):
            say(f"{name}: values <= 0 occur; gamma correction shifted by "
                f"{', '.join(f'{o:g}' for o in offsets[name])} per band.")

    reporter.phase(0.4, 0.97, "Applying the local correction")
    nodata_value = 0.0 if image_set.nodata is None else float(image_set.nodata)
    has_nodata = image_set.nodata is not None
    corrections = []
    ref = np.ascontiguousarray(reference)
    for image in images:
        corrections.append(functools.partial(
            correct_locally, (nodata_value, has_nodata), ref,
            np.ascontiguousarray(local_maps[image.name]), grid.interpolation(image),
            (method == "gamma", alpha, np.array(offsets[image.name], np.float64))))
    written = write_normalized(run, image_set, outputs, corrections, options, reporter, say,
                               "Local block adjustment: mean spectral profiles", client)
    timings["apply"] = written.seconds

    reporter.phase(0.97, 1.0, "Writing block maps")
    maps = [reference] + [local_maps[name] for name in names] if map_files else []
    for path, block_map in zip(map_files, maps, strict=True):
        write_block_map(run.temporary(path), block_map, grid, image_set.crs_wkt)
    result = LocalBlockAdjustmentResult(
        outputs=outputs, names=names, grid=grid, reference_map=reference, local_maps=local_maps,
        offsets=offsets, means_before=written.means_before, means_after=written.means_after,
        block_map_files=map_files, profile_plot=written.profile_plot, clamped=written.clamped)
    run.publish()
    reporter.update(1.0)
    timings["total"] = time.perf_counter() - started
    result.timings = timings
    return result


def _nanmin(values):
    values = np.asarray(values, np.float64)
    return float(np.nanmin(values)) if np.any(~np.isnan(values)) else math.inf


def correct_locally(nodata, reference, local, interpolation, gamma, window, tile, out, store,
                    totals):
    """Bring ``tile`` (pixels of ``window``) towards the ``reference`` block map from the
    image's ``local`` one (``interpolation``: :meth:`BlockGrid.interpolation` of the image;
    ``gamma``: (gamma or linear, alpha, offsets per band)); a correction of
    :func:`~.corrected_output.write_normalized`, module-level so tasks can carry it."""
    from .kernels import local_correction

    (r0, r1, fr), (c0, c1, fc) = interpolation
    is_gamma, alpha, shift = gamma
    rows = slice(window.yoff, window.yoff + window.ysize)
    cols = slice(window.xoff, window.xoff + window.xsize)
    local_correction(tile, *nodata, reference, local, r0[rows], r1[rows], fr[rows], c0[cols],
                     c1[cols], fc[cols], is_gamma, alpha, shift, out, store, *totals)


def _variation(image_set, masks, reporter, threads, window_size, runner):
    """Coefficient of variation (std / mean) of band 1 over the valid pixels of all images."""
    from .overlap_statistics import Moments, image_statistics

    per_image = image_statistics(image_set.images, image_set.nodata, masks, reporter, threads,
                                 window_size, runner)
    total = Moments.empty(image_set.bands)
    for moments in per_image:
        total = total.merge(moments)
    if total.counts[0] == 0 or total.means[0] == 0:
        return float("nan")
    return float(total.stds[0] / abs(total.means[0]))


def _block_sums(images, nodata, masks, grid, reporter, threads, window_size, runner):
    """Per image: block sums and counts (bands, rows, cols) and each band's minimum."""
    from ..io.raster_io import open_raster, plan_windows
    from ..parallel import split_evenly
    from .overlap_statistics import STATISTICS_WINDOW_PIXELS

    value, has = (0.0, False) if nodata is None else (float(nodata), True)
    parts = _pieces(threads, len(images))
    tasks, owners = [], []
    for index, image in enumerate(images):
        block_rows, block_cols = grid.block_of_pixels(image)
        windows = plan_windows(open_raster(image.path), 1, STATISTICS_WINDOW_PIXELS, window_size)
        for run in split_evenly(windows, parts):
            tasks.append((functools.partial(_image_block_sums, image, run, masks[index],
                                            (value, has), (block_rows, block_cols),
                                            (grid.rows, grid.cols)),
                          sum(w.xsize * w.ysize for w in run)))
            owners.append(index)
    pieces = runner(tasks, threads, reporter)
    sums = [None] * len(images)
    counts = [None] * len(images)
    minima = [None] * len(images)
    for owner, (piece_sums, piece_counts, piece_min) in zip(owners, pieces, strict=True):
        if sums[owner] is None:
            sums[owner], counts[owner], minima[owner] = piece_sums, piece_counts, piece_min
        else:
            sums[owner] = sums[owner] + piece_sums
            counts[owner] = counts[owner] + piece_counts
            minima[owner] = np.minimum(minima[owner], piece_min)
    return sums, counts, [list(m) for m in minima]


def _image_block_sums(image, run, mask, nodata, blocks_of_pixels, grid_shape, tick):
    """Block sums and counts (bands, rows, cols) and each band's minimum of the windows
    ``run`` of ``image`` (one piece; ``blocks_of_pixels``: block row per image row, block
    column per image column)."""
    from ..io.raster_io import TileReader
    from .kernels import accumulate_blocks
    from .overlap_statistics import window_mask

    block_rows, block_cols = blocks_of_pixels
    shape = (image.bands, *grid_shape)
    sums, counts = np.zeros(shape), np.zeros(shape, np.int64)
    minimum = np.full(image.bands, np.inf)
    bands = list(range(1, image.bands + 1))
    with TileReader([(image.path, bands, None)], run, threads=1, depth=2) as reader:
        for window, (tile,) in reader:
            tick(0)
            pixels, use = window_mask(mask, image.geotransform, window)
            accumulate_blocks(tile, *nodata, pixels, use,
                              block_rows[window.yoff:window.yoff + window.ysize],
                              block_cols[window.xoff:window.xoff + window.xsize],
                              sums, counts, minimum)
            tick(window.xsize * window.ysize)
    return sums, counts, minimum
