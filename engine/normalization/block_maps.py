"""Block grids and block maps of local block adjustment.

A :class:`BlockGrid` divides a canvas (the union of the images' bounds, or a
loaded reference map's extent) into rows x cols blocks. A block map is an
array (bands, rows, cols) of block means with NaN for empty blocks; it is
saved as a GeoTIFF of rows x cols cells, one Float32 band per image band,
geotransform (minx, (maxx − minx)/cols, 0, maxy, 0, −(maxy − miny)/rows),
NaN nodata (so a genuine mean of 0 survives a round trip).
"""

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import TesseraError
from ..io.raster_io import create_raster, gdal_failures, message_name, open_raster

#: spectralmatch's coefficient-of-variation rule: a 10 x 10 base grid scaled by
#: CV / (45 / 125), the CV of its reference imagery.
BASE_GRID = (10, 10)
REFERENCE_VARIATION = 45.0 / 125.0


@dataclass(frozen=True)
class BlockGrid:
    """``rows`` x ``cols`` blocks over ``bounds`` (minx, miny, maxx, maxy)."""

    bounds: tuple
    rows: int
    cols: int

    @property
    def width(self):
        return self.bounds[2] - self.bounds[0]

    @property
    def height(self):
        return self.bounds[3] - self.bounds[1]

    @property
    def geotransform(self):
        minx, miny, maxx, maxy = self.bounds
        return (minx, (maxx - minx) / self.cols, 0.0, maxy, 0.0, -(maxy - miny) / self.rows)

    def block_area(self):
        return (self.width / self.cols) * (self.height / self.rows)

    def _centres(self, image):
        x0, px, _, y0, _, py = image.geotransform
        xs = x0 + (np.arange(image.width) + 0.5) * px
        ys = y0 + (np.arange(image.height) + 0.5) * py
        return xs, ys

    def block_of_pixels(self, image):
        """(block row per image row, block col per image column) of the pixel centres."""
        xs, ys = self._centres(image)
        minx, _, _, maxy = self.bounds
        rows = np.floor((maxy - ys) / self.height * self.rows).astype(np.int64)
        cols = np.floor((xs - minx) / self.width * self.cols).astype(np.int64)
        return np.clip(rows, 0, self.rows - 1), np.clip(cols, 0, self.cols - 1)

    def interpolation(self, image):
        """Bilinear coordinates of the pixel centres between block centres:
        (row0, row1, row fraction) per image row, (col0, col1, col fraction) per
        column, from clip((maxy − y)/H·rows − 0.5, 0, rows − 1) and likewise."""
        xs, ys = self._centres(image)
        minx, _, _, maxy = self.bounds
        fr = np.clip((maxy - ys) / self.height * self.rows - 0.5, 0, self.rows - 1)
        fc = np.clip((xs - minx) / self.width * self.cols - 0.5, 0, self.cols - 1)
        r0, c0 = np.floor(fr).astype(np.int64), np.floor(fc).astype(np.int64)
        r1, c1 = np.minimum(r0 + 1, self.rows - 1), np.minimum(c0 + 1, self.cols - 1)
        return (r0, r1, fr - r0), (c0, c1, fc - c0)

    def covers(self, image):
        """True when the image's bounds lie inside the grid's (within half a pixel)."""
        minx, miny, maxx, maxy = image.bounds
        px, py = image.pixel_size
        gx0, gy0, gx1, gy1 = self.bounds
        return (minx >= gx0 - px / 2 and maxx <= gx1 + px / 2 and miny >= gy0 - py / 2
                and maxy <= gy1 + py / 2)


def grid_from_target(bounds, image_count, per_image):
    """rows, cols for about ``per_image`` blocks per image over ``bounds``.

    total = n × images; cols = round(√(total·W/H)); rows = round(total/cols);
    then the dimension along the canvas's longer side shrinks by one until
    rows·cols ≤ total.
    """
    if per_image < 1:
        raise TesseraError(f"The number of blocks per image must be at least 1; got {per_image}.")
    total = per_image * image_count
    width, height = bounds[2] - bounds[0], bounds[3] - bounds[1]
    cols = max(1, round(math.sqrt(total * width / height)))
    rows = max(1, round(total / cols))
    while rows * cols > total:
        if width > height and cols > 1:
            cols -= 1
        elif rows > 1:
            rows -= 1
        else:
            cols -= 1
    return rows, cols


def check_grid(rows, cols, image_set, pieces):
    """Refuse, before any work, a grid with more block rows or columns than the union of
    the images has pixel rows or columns, or whose block sums (``pieces`` of the images
    summed at once) would not fit in memory."""
    minx, miny, maxx, maxy = image_set.union_bounds()
    pixel_w = min(image.pixel_size[0] for image in image_set.images)
    pixel_h = min(image.pixel_size[1] for image in image_set.images)
    pixel_rows = max(1, math.ceil((maxy - miny) / pixel_h - 1e-9))
    pixel_cols = max(1, math.ceil((maxx - minx) / pixel_w - 1e-9))
    if rows > pixel_rows or cols > pixel_cols:
        raise TesseraError(
            f"A {rows} x {cols} block grid has more blocks than the images have pixels: their "
            f"union is {pixel_rows} x {pixel_cols} pixels, so the grid can have at most "
            f"{pixel_rows} rows and {pixel_cols} columns (a block needs pixels for its mean). "
            "Choose fewer blocks (the default is 100 blocks per image).")
    needed = rows * cols * image_set.bands * 8 * (2 * pieces + len(image_set.images) + 2)
    available = _physical_memory()
    if available and needed > available // 2:
        raise TesseraError(
            f"A {rows} x {cols} block grid needs about {needed / 2**30:.1f} GiB for its block "
            f"sums and maps, more than half of this computer's {available / 2**30:.1f} GiB of "
            "memory. Choose fewer blocks (or fewer threads).")


def _physical_memory():
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def grid_from_variation(variation):
    """rows, cols from the coefficient of variation of the mosaic (std / mean):
    spectralmatch's 10 x 10 base grid scaled by variation / (45 / 125)."""
    if not math.isfinite(variation) or variation <= 0:
        raise TesseraError(f"The coefficient of variation of the images is {variation}; the "
                           "block grid cannot be derived from it. Give a block count instead.")
    factor = variation / REFERENCE_VARIATION
    return max(1, round(BASE_GRID[0] * factor)), max(1, round(BASE_GRID[1] * factor))


def block_means(sums, counts, grid, pixel_area, threshold):
    """Means (bands, rows, cols), NaN where a block has fewer than
    ``threshold × block area / pixel area`` valid pixels (or none)."""
    needed = threshold * grid.block_area() / pixel_area
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return np.where((counts > 0) & (counts >= needed), means, np.nan)


def reference_map(local_maps):
    """The NaN-ignoring mean of local maps over images (NaN where all are empty)."""
    stack = np.stack(local_maps)
    counts = np.sum(~np.isnan(stack), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)


def write_block_map(path, block_map, grid, crs_wkt):
    """Save a block map (bands, rows, cols) as a Float32 GeoTIFF with NaN nodata, and
    read it back."""
    path = os.fspath(path)
    stored = block_map.astype(np.float32)
    with gdal_failures(f"Writing the block map {path}"):
        dataset = create_raster(path, grid.cols, grid.rows, block_map.shape[0], np.float32,
                                grid.geotransform, crs_wkt, nodata=float("nan"),
                                options=("COMPRESS=DEFLATE",))
        dataset.WriteArray(stored)
        dataset.FlushCache()
        dataset = None
    found, found_grid, _ = read_block_map(path)
    if found_grid != grid or not np.array_equal(found, stored, equal_nan=True):
        raise TesseraError(f"Writing the block map {path} failed: reading it back gave "
                           "other values.")
    return path


def read_block_map(path):
    """(map (bands, rows, cols) float64 with NaN for empty blocks, BlockGrid, CRS WKT)."""
    name = message_name(path)
    try:
        with gdal_failures(f"Reading the block map {name}"):
            dataset = open_raster(path)
            array = dataset.ReadAsArray()
        if array is None:
            raise TesseraError(f"Reading the block map {name} failed.")
    except TesseraError as error:
        if not os.path.isfile(os.fspath(path)):
            raise
        raise TesseraError(f"{error} The file is damaged or incomplete (truncated?): save the "
                           "block maps again, or choose another reference map.") from None
    gt = dataset.GetGeoTransform(can_return_null=True)
    if gt is None or gt[2] != 0 or gt[4] != 0 or gt[5] >= 0:
        raise TesseraError(f"The block map {name} has no north-up geotransform.")
    rows, cols = dataset.RasterYSize, dataset.RasterXSize
    bounds = (gt[0], gt[3] + gt[5] * rows, gt[0] + gt[1] * cols, gt[3])
    array = array.astype(np.float64)
    array = array[np.newaxis] if array.ndim == 2 else array
    for band in range(dataset.RasterCount):
        nodata = dataset.GetRasterBand(band + 1).GetNoDataValue()
        if nodata is not None and nodata == nodata:
            array[band][array[band] == nodata] = np.nan
    crs = dataset.GetProjection()
    dataset = None
    return array, BlockGrid(bounds, rows, cols), crs

