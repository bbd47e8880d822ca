"""Where images overlap, and the second image of a pair read on the first's grid.

:func:`find_overlaps` lists the pairs (i < j in the image set's name order)
whose bounds intersect, with the window of image i's pixels whose centres
lie inside image j. :class:`ColocatedPair` gives two rasters on exactly
that window: image i's pixels and image j's pixels on image i's grid (a
plain window when the grids line up, bilinear resampling otherwise); the
statistics use it only for pairs whose grids do not line up
(:func:`grids_line_up`), reading the others straight from the files.
"""

import itertools
import math
import uuid
from dataclasses import dataclass

from osgeo import gdal

from ..errors import TesseraError
from ..io.raster_io import Window, gdal_quiet

#: Grids whose origins differ by less than this fraction of a pixel line up.
GRID_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Overlap:
    """Images ``i`` < ``j`` (indices in the image set) and image i's pixel window."""

    i: int
    j: int
    window: Window


def bounds_intersect(a, b):
    """True when two (minx, miny, maxx, maxy) boxes share an area (touching is not enough)."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def overlap_window(first, second):
    """The window of ``first``'s pixels whose centres lie inside ``second``'s bounds, or None."""
    x0, px, _, y0, _, py = first.geotransform
    minx, miny, maxx, maxy = second.bounds
    eps = 1e-9
    col0 = max(0, math.ceil((minx - x0) / px - 0.5 - eps))
    col1 = min(first.width, math.floor((maxx - x0) / px - 0.5 + eps) + 1)
    row0 = max(0, math.ceil((maxy - y0) / py - 0.5 - eps))
    row1 = min(first.height, math.floor((miny - y0) / py - 0.5 + eps) + 1)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def find_overlaps(images):
    """Every pair (i < j) of ``images`` whose bounds intersect, with its pixel window."""
    pairs = []
    for i, j in itertools.combinations(range(len(images)), 2):
        if not bounds_intersect(images[i].bounds, images[j].bounds):
            continue
        window = overlap_window(images[i], images[j])
        if window is not None:
            pairs.append(Overlap(i, j, window))
    return pairs


def grids_line_up(first, second):
    """Same pixel size and origins a whole number of pixels apart."""
    gt_a, gt_b = first.geotransform, second.geotransform
    if abs(gt_a[1] - gt_b[1]) > GRID_TOLERANCE * gt_a[1] or \
            abs(gt_a[5] - gt_b[5]) > GRID_TOLERANCE * abs(gt_a[5]):
        return False
    shift_x = (gt_b[0] - gt_a[0]) / gt_a[1]
    shift_y = (gt_b[3] - gt_a[3]) / gt_a[5]
    return abs(shift_x - round(shift_x)) < GRID_TOLERANCE and \
        abs(shift_y - round(shift_y)) < GRID_TOLERANCE


class ColocatedPair:
    """Two in-memory VRTs over an overlap window: image i, and image j on i's grid.

    Use as a context manager; the VRT files live in ``/vsimem`` (reopenable by
    the reading threads) and are removed on exit.
    """

    def __init__(self, first, second, window, nodata):
        self.first, self.second, self.window = first, second, window
        self.resampled = not grids_line_up(first, second)
        tag = uuid.uuid4().hex
        self.first_path = f"/vsimem/tessera_overlap_{tag}_i.vrt"
        self.second_path = f"/vsimem/tessera_overlap_{tag}_j.vrt"
        self.geotransform = first.window_geotransform(window.xoff, window.yoff)
        with gdal_quiet():
            made = gdal.Translate(self.first_path, first.path, format="VRT",
                                  srcWin=[window.xoff, window.yoff, window.xsize, window.ysize])
            if made is None:
                raise TesseraError(f"Cannot read the overlap of {first.path} with "
                                   f"{second.path}: {gdal.GetLastErrorMsg()}")
            made = None
            if self.resampled:
                x0, px, _, y0, _, py = self.geotransform
                bounds = (x0, y0 + py * window.ysize, x0 + px * window.xsize, y0)
                # point bilinear at the first image's pixel centres (no widening
                # of the kernel when downsampling), as spectralmatch's resampling
                options = dict(format="VRT", outputBounds=bounds, width=window.xsize,
                               height=window.ysize, resampleAlg="bilinear",
                               warpOptions=["XSCALE=1", "YSCALE=1"])
                if nodata is not None:
                    options.update(srcNodata=nodata, dstNodata=nodata)
                made = gdal.Warp(self.second_path, second.path, **options)
            else:
                xoff = round((self.geotransform[0] - second.geotransform[0])
                             / second.geotransform[1])
                yoff = round((self.geotransform[3] - second.geotransform[3])
                             / second.geotransform[5])
                made = gdal.Translate(self.second_path, second.path, format="VRT",
                                      srcWin=[xoff, yoff, window.xsize, window.ysize])
            if made is None:
                raise TesseraError(f"Cannot read {second.path} on the grid of {first.path}: "
                                   f"{gdal.GetLastErrorMsg()}")
            made = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for path in (self.first_path, self.second_path):
            gdal.Unlink(path)
        return False
