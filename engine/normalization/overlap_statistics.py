"""Exact whole-image and overlap statistics for global regression.

Per band: the count, mean and population standard deviation of each image's
valid pixels, and of the co-located pixel pairs of each overlapping pair valid
in both images, the second image read on the first's grid.

:func:`measure_statistics` reads each input pixel once: images whose grids
line up are read together window by window over their union
(:func:`region_statistics`), all bands at a time, and the pixels of a window
feed both the whole-image moments and those of every pair overlapping there.
Only pairs whose grids do not line up are read again, the second image
resampled through a VRT (:func:`pair_statistics`); :func:`image_statistics`
is the plain per-image pass (the coefficient of variation of local block
adjustment). Windows run in parallel; pieces are merged exactly (Chan et al.'s
pairwise update).
"""

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..io.raster_io import TileReader, Window, open_raster, plan_windows, read_window
from ..parallel import run_in_threads, split_evenly
from .overlap import ColocatedPair

#: Pixels per statistics window.
STATISTICS_WINDOW_PIXELS = 1 << 20
#: Bytes of the images' pieces of one window of :func:`region_statistics` (all bands, the
#: pixels' own type), at most: one and a half statistics windows of 4-band 16-bit pixels.
REGION_WINDOW_BYTES = 12 << 20


@dataclass
class Moments:
    """Per band: number of valid pixels, their mean and sum of squared deviations
    (``given_stds``: standard deviations as read from a file, used as they are)."""

    counts: np.ndarray
    means: np.ndarray
    m2: np.ndarray
    given_stds: np.ndarray = None

    @classmethod
    def empty(cls, bands):
        return cls(np.zeros(bands, np.int64), np.zeros(bands), np.zeros(bands))

    @classmethod
    def from_values(cls, means, stds, counts):
        counts = np.asarray(counts, np.int64)
        stds = np.asarray(stds, np.float64)
        return cls(counts, np.asarray(means, np.float64), stds * stds * counts, stds)

    @property
    def stds(self):
        if self.given_stds is not None:
            return self.given_stds
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, np.sqrt(self.m2 / np.maximum(self.counts, 1)), 0.0)

    def merge(self, other):
        """Combine with ``other`` (the statistics of the union of both pixel sets)."""
        total = self.counts + other.counts
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.means - self.means
            means = np.where(total > 0, self.means + delta * other.counts / np.maximum(total, 1),
                             0.0)
            m2 = self.m2 + other.m2 + np.where(
                total > 0, delta * delta * self.counts * other.counts / np.maximum(total, 1), 0.0)
        return Moments(total, means, m2)

    def band(self, index):
        """``{"mean", "std", "size"}`` of one band, plain Python numbers."""
        return {"mean": float(self.means[index]), "std": float(self.stds[index]),
                "size": int(self.counts[index])}


def _nodata_args(nodata):
    if nodata is None:
        return 0.0, False
    return float(nodata), True


def window_mask(image_mask, geotransform, window):
    """(uint8 mask of the window's pixels feeding statistics, whether to use it)."""
    if image_mask is None:
        return np.ones((1, 1), np.uint8), False
    x0, px, _, y0, _, py = geotransform
    window_gt = (x0 + window.xoff * px, px, 0.0, y0 + window.yoff * py, 0.0, py)
    return image_mask.pixels(window_gt, window.ysize, window.xsize), True


def image_statistics(images, nodata, masks, reporter, threads=2, window_size=None,
                     runner=run_in_threads):
    """:class:`Moments` of every image (``masks``: ImageMask or None per image).
    ``runner``: :func:`~..parallel.run_in_threads` or a cluster's stand-in."""
    parts = max(1, math.ceil(threads / max(1, len(images))))
    tasks, owners = [], []
    for index, image in enumerate(images):
        windows = plan_windows(open_raster(image.path), 1, STATISTICS_WINDOW_PIXELS, window_size)
        for run in split_evenly(windows, parts):
            tasks.append((functools.partial(_image_moments, image, run, masks[index], nodata),
                          sum(w.xsize * w.ysize for w in run)))
            owners.append(index)
    pieces = runner(tasks, threads, reporter)
    results = [Moments.empty(image.bands) for image in images]
    for owner, piece in zip(owners, pieces, strict=True):
        results[owner] = results[owner].merge(piece)
    return results


def _image_moments(image, run, mask, nodata, tick):
    """The :class:`Moments` of the windows ``run`` of ``image`` (one task)."""
    from .kernels import accumulate_moments

    value, has = _nodata_args(nodata)
    moments = Moments.empty(image.bands)
    bands = list(range(1, image.bands + 1))
    with TileReader([(image.path, bands, None)], run, threads=1, depth=2) as reader:
        for window, (tile,) in reader:
            tick(0)
            pixels, use = window_mask(mask, image.geotransform, window)
            accumulate_moments(tile, value, has, pixels, use, moments.counts, moments.means,
                               moments.m2)
            tick(window.xsize * window.ysize)
    return moments


def pair_statistics(images, overlaps, nodata, masks, reporter, threads=2, window_size=None,
                    runner=run_in_threads):
    """(Moments of image i, Moments of image j) over each overlap's co-located pixels."""
    parts = max(1, math.ceil(threads / max(1, len(overlaps))))
    tasks, owners = [], []
    for index, overlap in enumerate(overlaps):
        size = overlap.window
        windows = _windows_of(size.xsize, size.ysize, window_size)
        for run in split_evenly(windows, parts):
            tasks.append((functools.partial(_pair_moments, images[overlap.i],
                                            images[overlap.j], overlap.window, run,
                                            (masks[overlap.i], masks[overlap.j]), nodata),
                          sum(w.xsize * w.ysize for w in run)))
            owners.append(index)
    pieces = runner(tasks, threads, reporter)
    results = [(Moments.empty(images[o.i].bands), Moments.empty(images[o.i].bands))
               for o in overlaps]
    for owner, (a, b) in zip(owners, pieces, strict=True):
        results[owner] = (results[owner][0].merge(a), results[owner][1].merge(b))
    return results


def _pair_moments(first, second, overlap_window, run, masks, nodata, tick):
    """(Moments of ``first``, Moments of ``second``) over the windows ``run`` of their
    overlap, ``second`` read on ``first``'s grid (one task, its own in-memory VRTs)."""
    from .kernels import accumulate_pair_moments

    value, has = _nodata_args(nodata)
    bands = list(range(1, first.bands + 1))
    result = (Moments.empty(first.bands), Moments.empty(first.bands))
    mask_i, mask_j = masks
    with ColocatedPair(first, second, overlap_window, nodata) as pair:
        sources = [(pair.first_path, bands, np.float64), (pair.second_path, bands, np.float64)]
        with TileReader(sources, run, threads=1, depth=2) as reader:
            for window, (tile_i, tile_j) in reader:
                tick(0)
                pixels, use = _pair_mask(mask_i, mask_j, pair.geotransform, window)
                a, b = result
                accumulate_pair_moments(tile_i, tile_j, value, has, pixels, use, a.counts,
                                        a.means, a.m2, b.means, b.m2)
                b.counts[:] = a.counts
                tick(window.xsize * window.ysize)
    return result


def _pair_mask(mask_i, mask_j, geotransform, window):
    if mask_i is None and mask_j is None:
        return np.ones((1, 1), np.uint8), False
    pixels_i, _ = window_mask(mask_i, geotransform, window)
    pixels_j, _ = window_mask(mask_j, geotransform, window)
    if mask_i is None:
        return pixels_j, True
    if mask_j is None:
        return pixels_i, True
    return (pixels_i & pixels_j).astype(np.uint8), True


def _windows_of(width, height, window_size=None):
    """Row-major windows over a width x height area (whole-width strips by default)."""
    if window_size:
        tile_w = tile_h = int(window_size)
    elif width * 256 <= STATISTICS_WINDOW_PIXELS:
        tile_w, tile_h = width, max(1, STATISTICS_WINDOW_PIXELS // width)
    else:
        tile_w = tile_h = int(math.sqrt(STATISTICS_WINDOW_PIXELS))
    return [Window(x, y, min(tile_w, width - x), min(tile_h, height - y))
            for y in range(0, height, tile_h) for x in range(0, width, tile_w)]


def measure_statistics(images, overlaps, nodata, masks, reporter, threads=2, window_size=None,
                       whole=None, runner=run_in_threads):
    """Whole-image :class:`Moments` of the images ``whole`` lists (indices; default all;
    None for the others) and (Moments of i, Moments of j) of every overlap, reading each
    input pixel once.

    Images whose grids line up (:func:`~.overlap.grids_line_up`) are read together, window
    by window over their union (:func:`region_statistics`): every window of every image
    feeds its whole-image moments and, where images overlap, the moments of each pair from
    the same pixels. Only a pair of images whose grids do not line up is read again, the
    second image resampled on the first's grid (:func:`pair_statistics`).
    """
    whole = range(len(images)) if whole is None else whole
    groups = aligned_groups(images)
    group_of = {index: number for number, group in enumerate(groups) for index in group}
    whole_moments = [None] * len(images)
    pair_moments = [None] * len(overlaps)
    crossing = [k for k, o in enumerate(overlaps) if group_of[o.i] != group_of[o.j]]
    weights = [sum(images[i].width * images[i].height for i in group) for group in groups]
    weights.append(sum(overlaps[k].window.xsize * overlaps[k].window.ysize for k in crossing))
    total = float(sum(weights)) or 1.0
    done = 0.0
    for group, weight in zip(groups, weights, strict=False):
        inside = [k for k, o in enumerate(overlaps) if o.i in group and o.j in group]
        wanted = [i for i in group if i in set(whole)]
        measured, pairs = region_statistics(
            images, group, wanted, [overlaps[k] for k in inside], nodata, masks,
            _SubProgress(reporter, done / total, weight / total), threads, window_size, runner)
        for index in wanted:
            whole_moments[index] = measured[index]
        for k, moments in zip(inside, pairs, strict=True):
            pair_moments[k] = moments
        done += weight
    if crossing:
        measured = pair_statistics(images, [overlaps[k] for k in crossing], nodata, masks,
                                   _SubProgress(reporter, done / total, weights[-1] / total),
                                   threads, window_size, runner)
        for k, moments in zip(crossing, measured, strict=True):
            pair_moments[k] = moments
    return whole_moments, pair_moments


class _SubProgress:
    """A share ``start .. start + span`` of a reporter's phase."""

    def __init__(self, reporter, start, span):
        self.reporter, self.start, self.span = reporter, start, span

    def update(self, fraction):
        self.reporter.update(self.start + self.span * fraction)

    def is_cancelled(self):
        return self.reporter.is_cancelled()

    def check(self):
        self.reporter.check()


def aligned_groups(images):
    """Indices of ``images`` in groups whose grids line up with the group's first image."""
    from .overlap import grids_line_up

    groups = []
    for index, image in enumerate(images):
        for group in groups:
            if grids_line_up(images[group[0]], image):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


@dataclass(frozen=True)
class _Placed:
    """An image on the common grid: its index and pixel rectangle there."""

    index: int
    x0: int
    y0: int
    x1: int
    y1: int

    def clip(self, window):
        """The part of ``window`` (common grid) inside this image, or None."""
        x0, y0 = max(self.x0, window.xoff), max(self.y0, window.yoff)
        x1 = min(self.x1, window.xoff + window.xsize)
        y1 = min(self.y1, window.yoff + window.ysize)
        return Window(x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None

    def local(self, window):
        """``window`` (common grid) in this image's pixel coordinates."""
        return Window(window.xoff - self.x0, window.yoff - self.y0, window.xsize, window.ysize)


def place_on_grid(images, group):
    """:class:`_Placed` of every image of ``group`` on the grid of its first image, shifted
    so that the union of their rectangles starts at (0, 0); and the union's size."""
    first = images[group[0]].geotransform
    placed = []
    for index in group:
        image = images[index]
        col = round((image.geotransform[0] - first[0]) / first[1])
        row = round((image.geotransform[3] - first[3]) / first[5])
        placed.append((index, col, row, col + image.width, row + image.height))
    left = min(p[1] for p in placed)
    top = min(p[2] for p in placed)
    placed = [_Placed(i, x0 - left, y0 - top, x1 - left, y1 - top)
              for i, x0, y0, x1, y1 in placed]
    return placed, max(p.x1 for p in placed), max(p.y1 for p in placed)


def union_windows(placed, width, height, block, pixel_bytes, window_size=None):
    """Row-major windows over the union (``width`` x ``height``) of the ``placed`` images.

    With ``window_size`` they are that square size. Otherwise whole-width strips a
    whole number of blocks (``block``: the first image's (width, height), offset with it)
    high when the images' pieces of one block row hold at most
    :data:`REGION_WINDOW_BYTES` (``pixel_bytes`` per pixel, all bands), else
    block-aligned tiles whose pieces (at most one per image covering a point) hold about
    that much: memory follows the window, not the number or size of the scenes.
    """
    if window_size:
        side = int(window_size)
        return [Window(x, y, min(side, width - x), min(side, height - y))
                for y in range(0, height, side) for x in range(0, width, side)]
    block_w, block_h = block
    first = placed[0]
    budget = max(block_w * block_h, REGION_WINDOW_BYTES // pixel_bytes)
    ys = _cuts(first.y0 % block_h, height, block_h)
    band_widths = [sum(p.x1 - p.x0 for p in placed if p.y0 < y1 and p.y1 > y0)
                   for y0, y1 in zip(ys, ys[1:], strict=False)]
    widest = max(band_widths) if band_widths else width
    if widest * block_h <= budget:
        units = max(1, budget // (widest * block_h))
        ys = ys[::units] + ([] if (len(ys) - 1) % units == 0 else [ys[-1]])
        return [Window(0, y0, width, y1 - y0) for y0, y1 in zip(ys, ys[1:], strict=False)]
    depth = max(sum(1 for q in placed if q.x0 < p.x1 and q.x1 > p.x0 and q.y0 < p.y1
                    and q.y1 > p.y0) for p in placed)
    side = max(1, int(math.sqrt(budget / depth)))
    step_x = block_w * max(1, side // block_w)
    step_y = block_h * max(1, side // block_h)
    xs = _cuts(first.x0 % block_w, width, block_w)[::max(1, step_x // block_w)]
    ys = _cuts(first.y0 % block_h, height, block_h)[::max(1, step_y // block_h)]
    xs = xs if xs[-1] == width else xs + [width]
    ys = ys if ys[-1] == height else ys + [height]
    return [Window(x0, y0, x1 - x0, y1 - y0) for y0, y1 in zip(ys, ys[1:], strict=False)
            for x0, x1 in zip(xs, xs[1:], strict=False)]


def _cuts(phase, length, step):
    """0, then every ``phase + k·step`` inside (0, length), then ``length``."""
    inner = list(range(phase or step, length, step))
    return [0] + inner + [length]


def region_statistics(images, group, wanted, overlaps, nodata, masks, reporter, threads=2,
                      window_size=None, runner=run_in_threads):
    """One pass over the union of the images ``group`` (indices; grids lining up):
    ({index: Moments} of the images ``wanted``, [(Moments of i, Moments of j)] of the
    ``overlaps`` (pairs within the group)).

    Each window reads every image it covers once (all bands, its own type); the same
    pixels feed the image's moments and those of every overlapping pair. Threads take
    contiguous runs of windows, each with its own file handles; partial moments are
    merged exactly.
    """
    placed, width, height = place_on_grid(images, group)
    where = {p.index: p for p in placed}
    needed = set(wanted) | {o.i for o in overlaps} | {o.j for o in overlaps}
    placed = [p for p in placed if p.index in needed]
    if not placed:
        return {}, []
    first = images[placed[0].index]
    block = open_raster(first.path).GetRasterBand(1).GetBlockSize()
    block = (max(1, min(block[0], first.width)), max(1, min(block[1], first.height)))
    pixel_bytes = first.bands * max(np.dtype(images[p.index].dtype).itemsize for p in placed)
    windows = union_windows(placed, width, height, block, pixel_bytes, window_size)
    region = _Region(images, placed, where, set(wanted), overlaps, nodata, masks)
    runs = split_evenly(windows, threads)
    pieces = runner([(functools.partial(region.measure, run),
                      sum(w.xsize * w.ysize for w in run)) for run in runs], threads, reporter)
    moments, pairs = region.empty()
    for piece_moments, piece_pairs in pieces:
        for index, m in piece_moments.items():
            moments[index] = moments[index].merge(m)
        pairs = [(a.merge(c), b.merge(d)) for (a, b), (c, d) in zip(pairs, piece_pairs,
                                                                   strict=True)]
    return moments, pairs


class _Region:
    """What the threads of :func:`region_statistics` share: the images placed on the
    common grid, which of them need whole-image moments, the overlaps to measure."""

    def __init__(self, images, placed, where, wanted, overlaps, nodata, masks):
        self.images, self.placed, self.where = images, placed, where
        self.wanted, self.overlaps, self.masks = wanted, overlaps, masks
        self.nodata = _nodata_args(nodata)
        self.bands = list(range(1, images[placed[0].index].bands + 1))
        # each overlap's rectangle on the common grid (image i's pixels inside image j)
        self.rectangles = [Window(where[o.i].x0 + o.window.xoff, where[o.i].y0 + o.window.yoff,
                                  o.window.xsize, o.window.ysize) for o in overlaps]

    def empty(self):
        """({index: Moments} of the wanted images, [(Moments, Moments)] per overlap), zero."""
        bands = len(self.bands)
        return ({i: Moments.empty(bands) for i in self.wanted},
                [(Moments.empty(bands), Moments.empty(bands)) for _ in self.overlaps])

    def measure(self, run, tick):
        """The moments of the windows ``run`` (one thread, its own file handles)."""
        handles = {p.index: open_raster(self.images[p.index].path) for p in self.placed}
        moments, pairs = self.empty()
        for window in run:
            tick(0)
            pieces = self._read(window, handles, moments)
            self._pairs(window, pieces, pairs)
            tick(window.xsize * window.ysize)
        return moments, pairs

    def _read(self, window, handles, moments):
        """Read every image's part of ``window`` once, all bands, and add it to the
        image's moments; returns {index: (part on the common grid, array)}."""
        from .kernels import accumulate_moments

        pieces = {}
        for p in self.placed:
            part = p.clip(window)
            if part is None:
                continue
            local = p.local(part)
            tile = read_window(handles[p.index], self.bands, local)
            pieces[p.index] = (part, tile)
            if p.index in self.wanted:
                pixels, use = window_mask(self.masks[p.index],
                                          self.images[p.index].geotransform, local)
                m = moments[p.index]
                accumulate_moments(tile, *self.nodata, pixels, use, m.counts, m.means, m.m2)
        return pieces

    def _pairs(self, window, pieces, pairs):
        """Add the co-located pixels of every overlap inside ``window`` to its moments,
        from the ``pieces`` already read."""
        from .kernels import accumulate_pair_moments

        for overlap, rectangle, (a, b) in zip(self.overlaps, self.rectangles, pairs,
                                              strict=True):
            if overlap.i not in pieces or overlap.j not in pieces:
                continue
            first = self.where[overlap.i]
            common = first.clip(_intersection(rectangle, window))
            if common is None:
                continue
            pixels, use = _pair_mask(self.masks[overlap.i], self.masks[overlap.j],
                                     self.images[overlap.i].geotransform, first.local(common))
            accumulate_pair_moments(_cut(pieces[overlap.i], common),
                                    _cut(pieces[overlap.j], common), *self.nodata, pixels, use,
                                    a.counts, a.means, a.m2, b.means, b.m2)
            b.counts[:] = a.counts


def _intersection(a, b):
    x0, y0 = max(a.xoff, b.xoff), max(a.yoff, b.yoff)
    x1 = min(a.xoff + a.xsize, b.xoff + b.xsize)
    y1 = min(a.yoff + a.ysize, b.yoff + b.ysize)
    return Window(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _cut(piece, window):
    """The part ``window`` (common grid) of a piece ``(its window, its array)``."""
    part, tile = piece
    rows = slice(window.yoff - part.yoff, window.yoff - part.yoff + window.ysize)
    cols = slice(window.xoff - part.xoff, window.xoff - part.xoff + window.xsize)
    return tile[:, rows, cols]
