"""Exact whole-image and overlap statistics for global regression.

One windowed, multi-band pass per image gives each band's count, mean and
population standard deviation of the valid pixels; one pass per overlapping
pair over its overlap window gives the same for the co-located pixel pairs
valid in both images (per band), the second image read on the first's grid.
Passes run in parallel (several pieces per image when threads outnumber
images); pieces are merged exactly (Chan et al.'s pairwise update).
"""

import math
from dataclasses import dataclass

import numpy as np

from .overlap import ColocatedPair
from .parallel import run_in_threads, split_evenly
from .raster_io import TileReader, Window, open_raster, plan_windows

#: Pixels per statistics window.
STATISTICS_WINDOW_PIXELS = 1 << 20


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


def image_statistics(images, nodata, masks, reporter, threads=2, window_size=None):
    """:class:`Moments` of every image (``masks``: ImageMask or None per image)."""
    from .normalization_kernels import accumulate_moments

    value, has = _nodata_args(nodata)
    parts = max(1, math.ceil(threads / max(1, len(images))))
    tasks, owners = [], []
    for index, image in enumerate(images):
        windows = plan_windows(open_raster(image.path), 1, STATISTICS_WINDOW_PIXELS, window_size)
        for run in split_evenly(windows, parts):

            def task(tick, image=image, run=run, mask=masks[index]):
                moments = Moments.empty(image.bands)
                bands = list(range(1, image.bands + 1))
                with TileReader([(image.path, bands, None)], run, threads=1, depth=2) as reader:
                    for window, (tile,) in reader:
                        tick(0)
                        pixels, use = window_mask(mask, image.geotransform, window)
                        accumulate_moments(tile, value, has, pixels, use, moments.counts,
                                           moments.means, moments.m2)
                        tick(window.xsize * window.ysize)
                return moments

            tasks.append((task, sum(w.xsize * w.ysize for w in run)))
            owners.append(index)
    pieces = run_in_threads(tasks, threads, reporter)
    results = [Moments.empty(image.bands) for image in images]
    for owner, piece in zip(owners, pieces, strict=True):
        results[owner] = results[owner].merge(piece)
    return results


def pair_statistics(images, overlaps, nodata, masks, reporter, threads=2, window_size=None):
    """(Moments of image i, Moments of image j) over each overlap's co-located pixels."""
    from .normalization_kernels import accumulate_pair_moments

    value, has = _nodata_args(nodata)
    parts = max(1, math.ceil(threads / max(1, len(overlaps))))
    pairs = []
    tasks, owners = [], []
    try:
        for index, overlap in enumerate(overlaps):
            first, second = images[overlap.i], images[overlap.j]
            pair = ColocatedPair(first, second, overlap.window, nodata)
            pairs.append(pair)
            size = overlap.window
            windows = _windows_of(size.xsize, size.ysize, window_size)
            for run in split_evenly(windows, parts):

                def task(tick, pair=pair, run=run, first=first, overlap=overlap):
                    bands = list(range(1, first.bands + 1))
                    result = (Moments.empty(first.bands), Moments.empty(first.bands))
                    sources = [(pair.first_path, bands, np.float64),
                               (pair.second_path, bands, np.float64)]
                    mask_i, mask_j = masks[overlap.i], masks[overlap.j]
                    with TileReader(sources, run, threads=1, depth=2) as reader:
                        for window, (tile_i, tile_j) in reader:
                            tick(0)
                            pixels, use = _pair_mask(mask_i, mask_j, pair.geotransform, window)
                            a, b = result
                            accumulate_pair_moments(tile_i, tile_j, value, has, pixels, use,
                                                    a.counts, a.means, a.m2, b.means, b.m2)
                            b.counts[:] = a.counts
                            tick(window.xsize * window.ysize)
                    return result

                tasks.append((task, sum(w.xsize * w.ysize for w in run)))
                owners.append(index)
        pieces = run_in_threads(tasks, threads, reporter)
    finally:
        for pair in pairs:
            pair.__exit__(None, None, None)
    results = [(Moments.empty(images[o.i].bands), Moments.empty(images[o.i].bands))
               for o in overlaps]
    for owner, (a, b) in zip(owners, pieces, strict=True):
        results[owner] = (results[owner][0].merge(a), results[owner][1].merge(b))
    return results


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
