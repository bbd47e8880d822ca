"""Definitions of the per-segment spatial statistics.

All of them describe the segment's pixels on the raster grid (the *shape*
comes from the segment raster alone; only the two variograms read image
values). With the geotransform ``gt`` a pixel (row r, column c) has its
centre at ``x = gt[0] + gt[1]*(c+0.5) + gt[2]*(r+0.5)``,
``y = gt[3] + gt[4]*(c+0.5) + gt[5]*(r+0.5)``.

=============== ===================================================================
name            columns and definition
=============== ===================================================================
``centroid``    ``centroid_x``, ``centroid_y``: mean map coordinates of the pixel
                **centres** (pyshepseg's ``userFuncMeanCoord`` averages corners).
``bbox``        ``xmin``, ``ymin``, ``xmax``, ``ymax``: map extent of the segment's
                pixels, outer pixel edges included (for a rotated grid: the extent
                of its pixel-space bounding rectangle).
``area``        ``area``: pixel count x |pixel area| (map units²).
``perimeter``   ``perimeter``: pixel sides shared with a non-segment pixel or the
                raster border, each counted with its length (pixel height for a
                side between two columns, pixel width between two rows); a ring's
                inner sides count. An estimate of the outline length of the
                pixelated shape (it overestimates diagonal and curved outlines).
``edgepixels``  ``edge_pixels``: pixels with at least one neighbour outside the
                segment (the raster border counts as outside); neighbours are the
                4 side neighbours (connectivity 4) or the 8 around (connectivity 8).
``variogram``   ``gamma_<k>``, k = 1..max_lag: the empirical semivariogram
                γ(k) = Σ(v(p) − v(q))² / (2·N(k)) over the N(k) unordered pairs
                {p, q} of the segment's valid pixels (image nodata and NaN
                excluded) whose centre distance |h| lies in bin k:
                (k − ½)·u < |h| ≤ (k + ½)·u, u = pixel width, all directions.
``diagonalrms`` ``drms_<k>``, k = 1..max_lag: pyshepseg's ``userFuncVariogram``
                numbers: the root mean square difference √(Σ(v(p) − v(q))² / N)
                over pairs where q lies dx ≥ 1 columns right and dy ≥ 1 rows below
                p, dx, dy ≤ max_lag, binned by k = ⌊√(dx² + dy²)⌋ in pixels. It
                leaves out horizontal, vertical and anti-diagonal pairs.
=============== ===================================================================

A segment gets the missing value in ``centroid``, ``bbox``, ``gamma_k`` and
``drms_k`` columns it has no pixel (or no pair in that bin) for; its
``area``, ``perimeter`` and ``edge_pixels`` are then 0.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..errors import TesseraError

SPATIAL_STATISTICS = (
    "centroid", "bbox", "area", "perimeter", "edgepixels", "variogram", "diagonalrms",
)
DEFAULT_SPATIAL_STATISTICS = ("centroid", "area", "perimeter")
#: Statistics that read image values (the others need only the segment raster).
VALUE_STATISTICS = ("variogram", "diagonalrms")
CONNECTIVITIES = (4, 8)
#: Largest lag accepted: the pair count grows with its square.
MAX_LAG_LIMIT = 64

_FIXED_COLUMNS = {
    "centroid": (("centroid_x", "real"), ("centroid_y", "real")),
    "bbox": (("xmin", "real"), ("ymin", "real"), ("xmax", "real"), ("ymax", "real")),
    "area": (("area", "real"),),
    "perimeter": (("perimeter", "real"),),
    "edgepixels": (("edge_pixels", "integer"),),
}
_LAG_PREFIX = {"variogram": "gamma", "diagonalrms": "drms"}


@dataclass(frozen=True)
class SpatialColumn:
    """One output column: ``part`` of statistic ``stat`` (a lag for the variograms)."""

    name: str
    stat: str
    part: str     # the default column name without prefix, e.g. "centroid_x", "gamma_3"
    kind: str     # "integer" or "real"
    lag: int = 0


class SpatialPlan:
    """The columns of the chosen spatial statistics, checked."""

    def __init__(self, statistics, max_lag=5, connectivity=8, prefix=""):
        if isinstance(statistics, str):
            statistics = [s for s in statistics.replace(" ", ",").split(",") if s]
        statistics = list(dict.fromkeys(statistics or ()))
        unknown = [s for s in statistics if s not in SPATIAL_STATISTICS]
        if unknown:
            raise TesseraError(
                f"Unknown spatial statistic(s) {', '.join(map(str, unknown))}; choose from "
                f"{', '.join(SPATIAL_STATISTICS)}."
            )
        if not statistics:
            raise TesseraError("Choose at least one spatial statistic.")
        if _whole_number(connectivity) not in CONNECTIVITIES:
            raise TesseraError(f"Connectivity must be 4 or 8, not {connectivity}.")
        self.statistics = statistics
        self.connectivity = _whole_number(connectivity)
        self.max_lag = 0
        if self.needs_values:
            lag = _whole_number(max_lag)
            if lag is None or not 1 <= lag <= MAX_LAG_LIMIT:
                raise TesseraError(
                    f"The maximum lag must be a whole number of pixels in 1..{MAX_LAG_LIMIT}, "
                    f"not {max_lag}."
                )
            self.max_lag = lag
        columns = []
        for stat in SPATIAL_STATISTICS:  # a fixed column order, whatever the choice order
            if stat not in statistics:
                continue
            if stat in _LAG_PREFIX:
                for lag in range(1, self.max_lag + 1):
                    part = f"{_LAG_PREFIX[stat]}_{lag}"
                    columns.append(SpatialColumn(f"{prefix}{part}", stat, part, "real", lag))
            else:
                for part, kind in _FIXED_COLUMNS[stat]:
                    columns.append(SpatialColumn(f"{prefix}{part}", stat, part, kind))
        self.columns = columns

    def wants(self, stat):
        return stat in self.statistics

    @property
    def needs_values(self):
        return any(s in VALUE_STATISTICS for s in self.statistics)

    def check_missing_value(self, missing_value):
        """The missing value as a float (every column that can be missing is real)."""
        try:
            return float(missing_value)
        except (TypeError, ValueError):
            raise TesseraError(f"The missing value {missing_value!r} is not a number.") from None


def _whole_number(value):
    """``value`` as an int when it is a whole number (5, 5.0, "5"), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


class PixelGeometry:
    """Map geometry of a raster's pixels, from its GDAL geotransform."""

    def __init__(self, geotransform):
        self.gt = tuple(float(v) for v in geotransform)
        gt = self.gt
        self.width = math.hypot(gt[1], gt[4])    # length of a pixel's top side
        self.height = math.hypot(gt[2], gt[5])   # length of a pixel's left side
        self.area = abs(gt[1] * gt[5] - gt[2] * gt[4])
        if self.area == 0:
            raise TesseraError(f"The geotransform {self.gt} has pixels of zero area.")

    def to_map(self, cols, rows):
        """Map (x, y) of pixel-space points (fractional columns and rows)."""
        gt = self.gt
        return gt[0] + gt[1] * cols + gt[2] * rows, gt[3] + gt[4] * cols + gt[5] * rows

    def distance(self, d_rows, d_cols):
        """Map distance between two pixel centres ``d_rows`` rows and ``d_cols`` columns apart."""
        gt = self.gt
        return math.hypot(gt[1] * d_cols + gt[2] * d_rows, gt[4] * d_cols + gt[5] * d_rows)


def variogram_offsets(geometry, max_lag):
    """Pixel offsets (dy, dx, bin) of the variogram's pairs, each unordered pair once.

    Offsets point into the half-plane dy > 0 or (dy == 0 and dx > 0); bin k
    (0-based index k-1) holds (k − ½)·u < |h| ≤ (k + ½)·u with u the pixel width.
    """
    unit = geometry.width
    reach = (max_lag + 0.5) * unit
    singular = np.linalg.svd(np.array([[geometry.gt[1], geometry.gt[2]],
                                       [geometry.gt[4], geometry.gt[5]]]), compute_uv=False)
    box = int(math.ceil(reach / singular.min()))
    offsets = []
    for dy in range(0, box + 1):
        for dx in range(-box, box + 1):
            if dy == 0 and dx <= 0:
                continue
            distance = geometry.distance(dy, dx)
            lag = math.ceil(distance / unit - 0.5)  # (k - 1/2) u < d <= (k + 1/2) u
            if 1 <= lag <= max_lag:
                offsets.append((dy, dx, lag - 1))
    return _offset_arrays(offsets)


def diagonal_rms_offsets(max_lag):
    """Pixel offsets (dy, dx, bin) of pyshepseg's diagonal RMS variogram.

    dx and dy run over 1..max_lag; the bin is ⌊√(dx² + dy²)⌋ − 1 when that
    lag is at most ``max_lag``.
    """
    offsets = []
    for dy in range(1, max_lag + 1):
        for dx in range(1, max_lag + 1):
            lag = math.isqrt(dx * dx + dy * dy)
            if lag <= max_lag:
                offsets.append((dy, dx, lag - 1))
    return _offset_arrays(offsets)


def _offset_arrays(offsets):
    table = np.array(offsets, dtype=np.int64).reshape(-1, 3)
    return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy()
