"""How much overlapping images disagree: mean |A − B| per overlap and band.

For the normalization reports: over the pixels valid in both images of a
pair (image j read on image i's grid, as the statistics are), before (the
inputs) and after (the outputs, on the same grids) a correction.
"""

from dataclasses import dataclass

import numpy as np

from ..io.raster_io import TileReader, Window
from .image_set import open_image_set
from .overlap import ColocatedPair, find_overlaps

#: Pixels read at once.
MISMATCH_WINDOW_PIXELS = 1 << 20


@dataclass
class OverlapMismatch:
    """Mean absolute difference of one overlap's co-located valid pixels, per band."""

    first: str
    second: str
    pixels: list   # per band: pixel pairs valid in both images
    before: list   # per band: mean |A − B| of the inputs
    after: list    # per band: mean |A − B| of the outputs


def overlap_mismatch(inputs, outputs, nodata=None, progress=None):
    """One :class:`OverlapMismatch` per overlapping pair of ``inputs`` (outputs matched
    to inputs by position)."""
    before = _mean_abs_differences(inputs, nodata)
    after = _mean_abs_differences(outputs, nodata, names=_names(inputs))
    rows = []
    for (first, second), (counts, values) in before.items():
        corrected = after.get((first, second)) or after.get((second, first))
        rows.append(OverlapMismatch(first, second, counts, values,
                                    corrected[1] if corrected else [float("nan")] * len(values)))
    return rows


def _names(paths):
    image_set = open_image_set(paths, min_images=1)
    by_path = {image.path: image.name for image in image_set.images}
    return [by_path[str(p)] for p in paths]


def _mean_abs_differences(paths, nodata, names=None):
    """(name_i, name_j) -> (pixels per band, mean |A − B| per band)."""
    image_set = open_image_set([str(p) for p in paths], min_images=1, nodata=nodata)
    images = image_set.images
    rename = dict(zip([str(p) for p in paths], names or [], strict=False))
    result = {}
    for overlap in find_overlaps(images):
        first, second = images[overlap.i], images[overlap.j]
        bands = list(range(1, first.bands + 1))
        counts = np.zeros(len(bands), np.int64)
        sums = np.zeros(len(bands))
        size = overlap.window
        step = max(1, MISMATCH_WINDOW_PIXELS // max(1, size.xsize))
        windows = [Window(0, y, size.xsize, min(step, size.ysize - y))
                   for y in range(0, size.ysize, step)]
        with ColocatedPair(first, second, size, image_set.nodata) as pair:
            sources = [(pair.first_path, bands, np.float64), (pair.second_path, bands, np.float64)]
            with TileReader(sources, windows, threads=1) as reader:
                for _, (a, b) in reader:
                    valid = np.isfinite(a) & np.isfinite(b)
                    if image_set.nodata is not None:
                        valid &= (a != image_set.nodata) & (b != image_set.nodata)
                    counts += valid.sum(axis=(1, 2))
                    sums += np.where(valid, np.abs(a - b), 0.0).sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        key = (rename.get(first.path, first.name), rename.get(second.path, second.name))
        result[key] = (counts.tolist(), means.tolist())
    return result
