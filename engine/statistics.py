"""Definitions of the per-zone statistics shared by every Tessera algorithm.

A *zone* is a segment of a segmentation raster or a polygon of a layer. A
:class:`StatPlan` turns the user's choice (statistics, bands, percentiles,
method, names) into output columns, each with a name, a RAT column kind and
the integer codes the numba kernels read.
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import TesseraError

#: Statistic names in the order the Processing algorithms list them.
STATISTICS = (
    "pixcount", "min", "max", "sum", "mean", "stddev", "variance", "range",
    "median", "mode", "minority", "variety",
)
#: Kernel code of each statistic; percentiles use PERCENTILE.
STAT_CODES = {name: code for code, name in enumerate(STATISTICS)}
PERCENTILE = len(STATISTICS)
PERCENTILE_METHODS = ("inverted_cdf", "linear")
DEFAULT_STATISTICS = ("pixcount", "min", "max", "mean", "stddev")
#: Bits of :meth:`StatPlan.band_needs`: moments (sum, mean, variance), values at
#: ranks (median, percentiles), runs of equal values (mode, minority, variety), and
#: which of mode, variety and minority.
NEED_MOMENTS, NEED_ORDER, NEED_RUNS, NEED_MODE, NEED_VARIETY, NEED_MINORITY = 1, 2, 4, 8, 16, 32


@dataclass(frozen=True)
class StatColumn:
    """One output column: statistic ``stat`` (or a percentile) of band ``band``."""

    name: str
    band: int          # 1-based band number of the image
    band_index: int    # position of the band in the bands read
    stat: str          # a name of STATISTICS, or "percentile"
    percentile: float  # the percentile (0..100) or NaN
    kind: str          # RAT column kind: "integer" or "real"

    @property
    def code(self):
        return PERCENTILE if self.stat == "percentile" else STAT_CODES[self.stat]


def format_percentile(value):
    """25 -> '25', 2.5 -> '2.5' (no exponent, no trailing zeros)."""
    return np.format_float_positional(float(value), trim="-")


def parse_percentiles(text):
    """Parse '25,75' (or a sequence) into floats, checking 0 <= p <= 100."""
    if text is None:
        return []
    if isinstance(text, str):
        parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    else:
        parts = list(text)
    values = []
    for part in parts:
        try:
            value = float(part)
        except (TypeError, ValueError):
            raise TesseraError(f"Percentile '{part}' is not a number.") from None
        if not 0.0 <= value <= 100.0 or math.isnan(value):
            raise TesseraError(f"Percentile {part} is outside 0..100.")
        if value not in values:
            values.append(value)
    return values


def value_kind(stat, image_dtype, method="inverted_cdf"):
    """The RAT column kind ("integer" or "real") of a statistic of an image type.

    Integer images give integer columns for statistics that are pixel values
    (min, max, mode, ...) when the values fit 32 bits; the rest is real.
    """
    dtype = np.dtype(image_dtype)
    if stat in ("pixcount", "variety"):
        return "integer"
    if stat in ("sum", "mean", "stddev", "variance"):
        return "real"
    if stat in ("median", "percentile") and method == "linear":
        return "real"
    if dtype.kind not in "iu":
        return "real"
    if stat == "range":
        return "integer" if dtype.itemsize <= 2 else "real"
    fits_int32 = dtype.itemsize < 4 or (dtype.itemsize == 4 and dtype.kind == "i")
    return "integer" if fits_int32 else "real"


class StatPlan:
    """The columns to compute, and the arrays the kernels need to compute them."""

    def __init__(self, statistics, bands, image_dtype, percentiles=(),
                 percentile_method="inverted_cdf", name_for=None):
        statistics = list(dict.fromkeys(statistics or ()))
        unknown = [s for s in statistics if s not in STAT_CODES]
        if unknown:
            raise TesseraError(
                f"Unknown statistic(s) {', '.join(map(str, unknown))}; choose from "
                f"{', '.join(STATISTICS)} (percentiles are given separately)."
            )
        if percentile_method not in PERCENTILE_METHODS:
            raise TesseraError(
                f"Unknown percentile method '{percentile_method}'; use "
                f"{' or '.join(PERCENTILE_METHODS)}."
            )
        self.percentiles = parse_percentiles(percentiles)
        if not statistics and not self.percentiles:
            raise TesseraError("Choose at least one statistic or percentile.")
        self.bands = list(bands)
        self.method = percentile_method
        self.image_dtype = np.dtype(image_dtype)
        name_for = name_for or default_column_name
        columns = []
        for index, band in enumerate(self.bands):
            for stat in statistics:
                kind = value_kind(stat, image_dtype, percentile_method)
                columns.append(StatColumn(name_for(band, stat, None), band, index, stat,
                                          math.nan, kind))
            for p in self.percentiles:
                kind = value_kind("percentile", image_dtype, percentile_method)
                columns.append(StatColumn(name_for(band, "percentile", p), band, index,
                                          "percentile", p, kind))
        names = [c.name for c in columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise TesseraError(f"Column name(s) used twice: {', '.join(duplicated)}.")
        self.columns = columns

    @property
    def names(self):
        return [c.name for c in self.columns]

    def kernel_table(self):
        """int64 array (columns, 3): band index, statistic code, percentile index."""
        table = np.zeros((len(self.columns), 3), dtype=np.int64)
        for row, column in enumerate(self.columns):
            table[row, 0] = column.band_index
            table[row, 1] = column.code
            table[row, 2] = (self.percentiles.index(column.percentile)
                             if column.stat == "percentile" else -1)
        return table

    def band_needs(self):
        """Per band read: the NEED_* bits."""
        needs = np.zeros(len(self.bands), dtype=np.int64)
        for column in self.columns:
            if column.stat in ("sum", "mean", "stddev", "variance"):
                needs[column.band_index] |= NEED_MOMENTS
            if column.stat in ("median", "percentile"):
                needs[column.band_index] |= NEED_ORDER
            if column.stat in ("mode", "minority", "variety"):
                needs[column.band_index] |= NEED_RUNS
            if column.stat == "mode":
                needs[column.band_index] |= NEED_MODE
            if column.stat == "variety":
                needs[column.band_index] |= NEED_VARIETY
            if column.stat == "minority":
                needs[column.band_index] |= NEED_MINORITY
        return needs

    def check_missing_value(self, missing_value):
        """Refuse a missing value that an integer column cannot hold."""
        value = float(missing_value)
        integer_columns = [c.name for c in self.columns
                           if c.kind == "integer" and c.stat != "pixcount"]
        if integer_columns and (not math.isfinite(value) or not value.is_integer()
                                or not -(2**31) <= value < 2**31):
            raise TesseraError(
                f"The missing value {missing_value} cannot be stored in the integer column(s) "
                f"{', '.join(integer_columns[:4])}: choose a whole number such as -9999."
            )
        return value


def default_column_name(band, stat, percentile):
    """``b<band>_<stat>``, percentiles ``b<band>_p<p>`` (``b1_mean``, ``b2_p25``, ``b1_p2.5``)."""
    if stat == "percentile":
        return f"b{band}_p{format_percentile(percentile)}"
    return f"b{band}_{stat}"
