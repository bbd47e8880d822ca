"""The catalogue of per-zone statistics and pixel rules, shared by every Tessera algorithm.

A *zone* is a segment of a segmentation raster or a polygon of a layer. Each
statistic is declared once, in :data:`CATALOGUE`: its name (and kernel code),
how its columns are named, the kind of its values, what the kernels must
prepare for it (:data:`NEED_MOMENTS` ...), its help and definition, and where
it applies. The Processing algorithms build their options, help and column
names from it; :class:`StatPlan` turns the user's choice (statistics, bands,
percentiles, method, names) into output columns and the arrays the numba
kernels read; the kernels compute every column through one dispatch,
:func:`.column_values.column_value`, which fails on a code it does not know.

Adding a statistic takes three files when it is computed from what the kernels
already prepare (moments, ordered values, runs of equal values, class counts):
its entry here, its branch in :mod:`tessera.engine.statistics.column_values`, and its reference in
``tests/statistic_reference.py`` (the README table is rendered from here by
:func:`markdown_table`).

This module holds no numba: it is imported by the algorithms and by the kernels.
"""

import math
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import TesseraError

#: What a statistic needs the kernels to prepare for each zone (bits of
#: :meth:`StatPlan.band_needs`): moments (mean, variance), higher central moments
#: (third and fourth), values at ranks (median, percentiles), runs of equal values
#: (mode, minority, variety) and which of mode, variety and minority, the share of
#: every class value (frac), and the median among the values at ranks.
NEED_MOMENTS, NEED_ORDER, NEED_RUNS, NEED_MODE, NEED_VARIETY, NEED_MINORITY = 1, 2, 4, 8, 16, 32
NEED_SHAPE, NEED_CLASSES, NEED_MEDIAN = 64, 128, 256

#: Where a statistic applies: per segment, per polygon (centre, all_touched), and
#: per polygon with coverage weights (fraction).
SEGMENTS, ZONES, WEIGHTED = "segments", "zones", "weighted zones"
EVERYWHERE = (SEGMENTS, ZONES, WEIGHTED)

#: Kinds of values (see :func:`value_kind`): a count (integer; real when weighted), a
#: pixel value (the image's kind), a span of pixel values (range), a value at a rank
#: (a pixel value, or real when interpolated), a number of values (integer), a real.
COUNT, PIXEL, SPAN, RANK, NUMBER, REAL = "count", "pixel", "span", "rank", "number", "real"


@dataclass(frozen=True)
class Statistic:
    """One statistic of the catalogue."""

    name: str
    values: str        # kind of values: COUNT, PIXEL, SPAN, RANK, NUMBER or REAL
    needs: int         # NEED_* bits
    help: str          # one line for the algorithms' help (HTML-safe)
    definition: str    # for the README table (Markdown)
    weighted: str = ""  # what changes under the fraction rule, if anything
    applies: tuple = EVERYWHERE
    #: column label: "{name}", or with the column's parameter (percentile, class value)
    label: str = "{name}"


#: Every statistic a user may ask for, in the order the algorithms list them (the
#: enum's indices: append new statistics at the end).
CATALOGUE = (
    Statistic("pixcount", COUNT, 0, "valid pixels",
              "number of valid pixels", "Σw, the covered area in pixels (real)"),
    Statistic("min", PIXEL, 0, "smallest value", "smallest value",
              "over the pixels touched, unweighted"),
    Statistic("max", PIXEL, 0, "largest value", "largest value",
              "over the pixels touched, unweighted"),
    Statistic("sum", REAL, NEED_MOMENTS, "sum of the values", "Σv (float64)", "Σw·v"),
    Statistic("mean", REAL, NEED_MOMENTS, "mean", "Σv / N (float64)", "Σw·v / Σw"),
    Statistic("stddev", REAL, NEED_MOMENTS, "standard deviation (population)",
              "√variance", "weighted"),
    Statistic("variance", REAL, NEED_MOMENTS, "variance (population)",
              "Σ(v − mean)² / N (ddof = 0)", "Σw·(v − mean)² / Σw"),
    Statistic("range", SPAN, 0, "max − min", "max − min", "over the pixels touched"),
    Statistic("median", RANK, NEED_ORDER | NEED_MEDIAN,
              "median (percentile 50 by the percentile method)",
              "percentile 50", "exactextract's weighted quantile (real)"),
    Statistic("mode", PIXEL, NEED_RUNS | NEED_MODE,
              "most frequent value (ties to the smallest)",
              "most frequent value, ties to the smallest", "largest summed weight"),
    Statistic("minority", PIXEL, NEED_RUNS | NEED_MINORITY,
              "least frequent value (ties to the smallest)",
              "least frequent value, ties to the smallest", "smallest summed weight"),
    Statistic("variety", NUMBER, NEED_RUNS | NEED_VARIETY, "number of distinct values",
              "number of distinct values", "over the pixels touched"),
    Statistic("cv", REAL, NEED_MOMENTS,
              "coefficient of variation, stddev / mean (missing when the mean is 0)",
              "stddev / mean (exactextract's `coefficient_of_variation`); missing when the "
              "mean is 0", "weighted stddev / weighted mean"),
    Statistic("skewness", REAL, NEED_MOMENTS | NEED_SHAPE,
              "skewness, m3 / m2^1.5 (population; missing when all values are equal)",
              "m₃ / m₂^1.5 with mₖ = Σ(v − mean)ᵏ / N: population skewness, as "
              "`scipy.stats.skew` (bias=True); missing when all values are equal",
              "mₖ = Σw·(v − mean)ᵏ / Σw"),
    Statistic("kurtosis", REAL, NEED_MOMENTS | NEED_SHAPE,
              "excess kurtosis, m4 / m2^2 − 3 (population; missing when all values are "
              "equal)",
              "m₄ / m₂² − 3: population **excess** kurtosis (0 for a normal distribution), as "
              "`scipy.stats.kurtosis` (fisher=True, bias=True); missing when all values are "
              "equal", "mₖ = Σw·(v − mean)ᵏ / Σw"),
    Statistic("frac", REAL, NEED_CLASSES,
              "class fractions of a categorical (integer) image: one column "
              "frac_&lt;value&gt; per value present in any zone, the share of the zone's "
              "valid pixels holding that value",
              "one column `frac_<value>` per class value present in any zone: the share of "
              "the zone's valid pixels with that value (exactextract's `frac`); integer "
              "images only", "the share of the covered area (Σw of the value / Σw)",
              label="frac_{parameter}"),
)
#: The catalogue by name.
BY_NAME = {statistic.name: statistic for statistic in CATALOGUE}
#: Statistic names in the order the Processing algorithms list them.
STATISTICS = tuple(statistic.name for statistic in CATALOGUE)
#: Kernel code of each statistic; percentiles use PERCENTILE.
STAT_CODES = {name: code for code, name in enumerate(STATISTICS)}
PERCENTILE = len(STATISTICS)
#: Percentiles are asked for separately (a list of values), but are columns like the rest.
PERCENTILE_STATISTIC = Statistic(
    "percentile", RANK, NEED_ORDER, "percentile p (0..100)",
    "the smallest value with at least p % of the pixels at or below it (`inverted_cdf`, an "
    "actual pixel value), or numpy's `linear` interpolation",
    "exactextract's weighted quantile (real)", label="p{parameter}")
BY_NAME["percentile"] = PERCENTILE_STATISTIC
PERCENTILE_METHODS = ("inverted_cdf", "linear")
DEFAULT_STATISTICS = ("pixcount", "min", "max", "mean", "stddev")
#: Statistics with one column per class value, known only once the image is read.
CLASS_STATISTICS = tuple(s.name for s in CATALOGUE if s.needs & NEED_CLASSES)
#: Class values a ``frac`` band may hold (more: the image is not categorical).
MAX_CLASSES = 1000


@dataclass(frozen=True)
class PixelRule:
    """Which pixels a polygon takes (zonal statistics)."""

    name: str
    code: int          # the rasterizing kernels' code (engine/zonal/polygon_raster.py)
    help: str


PIXEL_RULE_CATALOGUE = (
    PixelRule("centre", 0, "pixels whose centre is inside (as QGIS's zonal statistics and "
              "rasterstats)"),
    PixelRule("all_touched", 1, "every pixel the polygon covers with a non-zero area"),
    PixelRule("fraction", 2, "every such pixel weighted by the exact fraction of its area "
              "inside the polygon (as exactextract)"),
)
#: Pixel rule name -> kernel code, in the order the algorithm lists them.
PIXEL_RULES = {rule.name: rule.code for rule in PIXEL_RULE_CATALOGUE}
CENTRE, ALL_TOUCHED, FRACTION = (PIXEL_RULES[n] for n in ("centre", "all_touched", "fraction"))


def statistics_help(weighted=False):
    """The help of a STATISTICS parameter: every statistic of the catalogue (and, with
    ``weighted``, what the fraction rule changes)."""
    parts = []
    for statistic in CATALOGUE:
        text = f"{statistic.name}: {statistic.help}"
        if weighted and statistic.weighted:
            text += f" (fraction: {statistic.weighted})"
        parts.append(text)
    return "; ".join(parts) + ". From qgis_process: STATISTICS=mean,median,frac."


def markdown_table():
    """The README's table of statistics."""
    lines = ["| statistic | definition | column type | under `fraction` |",
             "| --- | --- | --- | --- |"]
    kinds = {COUNT: "Integer", PIXEL: "the image's kind¹", SPAN: "Integer for 8/16-bit "
             "integer images, else Real", RANK: "the image's kind¹ (Real for `linear`)",
             NUMBER: "Integer", REAL: "Real"}
    for statistic in (*CATALOGUE, PERCENTILE_STATISTIC):
        name = f"`{statistic.name}`"
        if statistic.label != "{name}":
            column = statistic.label.format(name=statistic.name, parameter="<p>" if
                                            statistic is PERCENTILE_STATISTIC else "<value>")
            name += f" (columns `{column}`)"
        lines.append(f"| {name} | {statistic.definition} | {kinds[statistic.values]} | "
                     f"{statistic.weighted or 'the same'} |")
    lines.append("")
    lines.append("¹ Integer for integer images whose values fit 32 bits (uint32: Real), Real for "
                 "float images.")
    return "\n".join(lines)


@dataclass(frozen=True)
class StatColumn:
    """One output column: statistic ``stat`` (or a percentile) of band ``band``."""

    name: str
    band: int          # 1-based band number of the image
    band_index: int    # position of the band in the bands read
    stat: str          # a name of STATISTICS, or "percentile"
    percentile: float  # the percentile (0..100) or NaN
    kind: str          # RAT column kind: "integer" or "real"
    class_value: float = math.nan  # frac: the class value

    @property
    def code(self):
        return PERCENTILE if self.stat == "percentile" else STAT_CODES[self.stat]


def format_percentile(value):
    """25 -> '25', 2.5 -> '2.5' (no exponent, no trailing zeros)."""
    return np.format_float_positional(float(value), trim="-")


def column_label(stat, parameter=None):
    """The label of a statistic's column: ``mean``, ``p25`` (percentile 25), ``frac_3``
    (class 3)."""
    text = "" if parameter is None else format_percentile(parameter)
    return BY_NAME[stat].label.format(name=stat, parameter=text)


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


def value_kind(stat, image_dtype, method="inverted_cdf", weighted=False):
    """The RAT column kind ("integer" or "real") of a statistic of an image type.

    Integer images give integer columns for statistics that are pixel values
    (min, max, mode, ...) when the values fit 32 bits; the rest is real. Under
    the fraction rule (``weighted``) counts and quantiles are real.
    """
    values = BY_NAME[stat].values
    dtype = np.dtype(image_dtype)
    if values == COUNT:
        return "real" if weighted else "integer"
    if values == NUMBER:
        return "integer"
    if values == REAL or (values == RANK and (method == "linear" or weighted)):
        return "real"
    if dtype.kind not in "iu":
        return "real"
    if values == SPAN:
        return "integer" if dtype.itemsize <= 2 else "real"
    fits_int32 = dtype.itemsize < 4 or (dtype.itemsize == 4 and dtype.kind == "i")
    return "integer" if fits_int32 else "real"


class StatPlan:
    """The columns to compute, and the arrays the kernels need to compute them.

    :attr:`columns` are the columns the kernels fill (``results`` rows); class
    statistics (``frac``) add columns once the classes present are known:
    :meth:`output_columns`.
    """

    def __init__(self, statistics, bands, image_dtype, percentiles=(),
                 percentile_method="inverted_cdf", name_for=None, where=SEGMENTS):
        statistics = list(dict.fromkeys(statistics or ()))
        unknown = [s for s in statistics if s not in STAT_CODES]
        if unknown:
            raise TesseraError(
                f"Unknown statistic(s) {', '.join(map(str, unknown))}; choose from "
                f"{', '.join(STATISTICS)} (percentiles are given separately)."
            )
        elsewhere = [s for s in statistics if where not in BY_NAME[s].applies]
        if elsewhere:
            raise TesseraError(f"The statistic(s) {', '.join(elsewhere)} do not apply to "
                               f"{where}.")
        if percentile_method not in PERCENTILE_METHODS:
            raise TesseraError(
                f"Unknown percentile method '{percentile_method}'; use "
                f"{' or '.join(PERCENTILE_METHODS)}."
            )
        self.image_dtype = np.dtype(image_dtype)
        by_class = [s for s in statistics if s in CLASS_STATISTICS]
        if by_class and self.image_dtype.kind not in "iu":
            raise TesseraError(
                f"The statistic {by_class[0]} (class fractions) is for categorical images of "
                f"integer class values; this image holds {self.image_dtype} values.")
        self.percentiles = parse_percentiles(percentiles)
        if not statistics and not self.percentiles:
            raise TesseraError("Choose at least one statistic or percentile.")
        self.bands = list(bands)
        self.method = percentile_method
        self.weighted = where == WEIGHTED
        self.statistics = statistics
        self.name_for = name_for or default_column_name
        self.columns = [c for c in self._layout() if c.stat not in CLASS_STATISTICS]
        self._check_names([c.name for c in self.columns])

    def _layout(self, classes=None):
        """Every column in output order: per band, the statistics in the order asked (a
        class statistic as one placeholder, or one column per value of ``classes[band
        index]``), then the percentiles."""
        columns = []
        for index, band in enumerate(self.bands):
            for stat in self.statistics:
                kind = value_kind(stat, self.image_dtype, self.method, self.weighted)
                if stat in CLASS_STATISTICS and classes is not None:
                    columns.extend(
                        StatColumn(self.name_for(band, stat, value), band, index, stat,
                                   math.nan, kind, float(value))
                        for value in classes.get(index, ()))
                else:
                    columns.append(StatColumn(self.name_for(band, stat, None), band, index,
                                              stat, math.nan, kind))
            for p in self.percentiles:
                kind = value_kind("percentile", self.image_dtype, self.method, self.weighted)
                columns.append(StatColumn(self.name_for(band, "percentile", p), band, index,
                                          "percentile", p, kind))
        return columns

    @staticmethod
    def _check_names(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise TesseraError(f"Column name(s) used twice: {', '.join(duplicated)}.")

    @property
    def names(self):
        return [c.name for c in self.columns]

    @property
    def has_classes(self):
        """Whether some columns (``frac``) depend on the class values present."""
        return any(s in CLASS_STATISTICS for s in self.statistics)

    def output_columns(self, classes=None):
        """Every output column, class columns for the values ``classes[band index]``
        (sorted) included, in output order."""
        if not self.has_classes:
            return list(self.columns)
        columns = self._layout(classes or {})
        self._check_names([c.name for c in columns])
        return columns

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
        """Per band read: the NEED_* bits of its statistics."""
        needs = np.zeros(len(self.bands), dtype=np.int64)
        for index in range(len(self.bands)):
            for stat in self.statistics:
                needs[index] |= BY_NAME[stat].needs
            if self.percentiles:
                needs[index] |= PERCENTILE_STATISTIC.needs
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


def default_column_name(band, stat, parameter):
    """``b<band>_<label>``: ``b1_mean``, ``b2_p25``, ``b1_p2.5``, ``b1_frac_3``."""
    return f"b{band}_{column_label(stat, parameter)}"


def with_class_columns(plan, results, pairs, missing, allocate=None):
    """``(output columns, table)``: the kernels' ``results`` (one row per kernel column,
    one column per zone) with the class (``frac``) columns added from the kernels'
    ``pairs`` (a list of arrays whose rows are zone, band index, class value, share).

    A class column holds the share where the zone has the class, 0 where the zone has
    valid pixels but not the class, and ``missing`` where it has no valid pixel.
    ``allocate(columns)`` gives the new table (default: a float64 array); without
    class statistics, ``results`` itself is returned.
    """
    if not plan.has_classes:
        return list(plan.columns), results
    pairs = pairs.parts if isinstance(pairs, ClassShares) else pairs
    pairs = np.concatenate(pairs) if len(pairs) else np.zeros((0, 4), np.float64)
    by_band = {}
    for index in range(len(plan.bands)):
        mine = pairs[pairs[:, 1] == index]
        mine = mine[np.argsort(mine[:, 2], kind="stable")]
        values, firsts = np.unique(mine[:, 2], return_index=True)
        check_class_count(len(values), plan.bands[index])
        present = np.unique(mine[:, 0]).astype(np.int64)  # zones with valid pixels here
        by_band[index] = (mine, values, np.append(firsts, len(mine)), present)
    columns = plan.output_columns({i: entry[1] for i, entry in by_band.items()})
    zones = results.shape[1]
    table = (allocate or (lambda n: np.empty((n, zones), np.float64)))(len(columns))
    kernel_row = {c.name: row for row, c in enumerate(plan.columns)}
    for out, column in enumerate(columns):
        if column.stat not in CLASS_STATISTICS:
            table[out] = results[kernel_row[column.name]]
            continue
        mine, values, bounds, present = by_band[column.band_index]
        k = int(np.searchsorted(values, column.class_value))
        row = table[out]
        row[:] = missing
        row[present] = 0.0
        chosen = mine[bounds[k]:bounds[k + 1]]
        row[chosen[:, 0].astype(np.int64)] = chosen[:, 3]
    return columns, table


class ClassShares:
    """The class shares (``frac``) the kernels return, batch by batch (from several threads):
    rows of (zone, band index, class value, share). A band holding more class values than
    :data:`MAX_CLASSES` is refused as soon as they are seen, not after the whole image."""

    def __init__(self, plan):
        self.bands = list(plan.bands)
        self.parts = []
        self._seen = [np.zeros(0, np.float64) for _ in self.bands]
        self._lock = threading.Lock()

    def add(self, pairs):
        if not len(pairs):
            return
        with self._lock:
            self.parts.append(pairs)
            for index, band in enumerate(self.bands):
                seen = np.union1d(self._seen[index], pairs[pairs[:, 1] == index, 2])
                check_class_count(len(seen), band)
                self._seen[index] = seen


def check_class_count(count, band):
    """Refuse more class values than :data:`MAX_CLASSES` in one band."""
    if count > MAX_CLASSES:
        raise TesseraError(
            f"Class fractions (frac) of band {band} found more than {MAX_CLASSES} distinct "
            "values: frac is for categorical images (land cover classes, ...); for continuous "
            "values use percentiles or the other statistics.")
