"""The one per-column dispatch of the statistics kernels: the value of a column
from what a kernel prepared for a zone (numba).

Both kernels (:func:`.stat_kernels.zone_statistics`, plain, and
:func:`.weighted_kernels.weighted_zone_statistics`, coverage-weighted) prepare,
for each zone and band, the quantities its statistics need (the ``NEED_*``
bits of :mod:`tessera.engine.statistics.catalogue`) in a ``prepared`` tuple (slots below) and the
values of the asked quantiles; :func:`column_value` then turns them into any
column, the same way for both. An unknown statistic code raises.

Class shares (``frac``) are not columns the kernels know in advance: they are
emitted as (zone, band index, value, share) rows by :func:`add_class_share`.

numba caches the kernels by their own source files: after editing this module
(or the catalogue's codes), touch ``stat_kernels.py`` and ``weighted_kernels.py``
so that their cached machine code is rebuilt.
"""

import math

import numpy as np
from numba import njit

from .catalogue import PERCENTILE, STAT_CODES

PIXCOUNT, MIN, MAX, SUM = (STAT_CODES[s] for s in ("pixcount", "min", "max", "sum"))
MEAN, STDDEV, VARIANCE, RANGE = (STAT_CODES[s] for s in ("mean", "stddev", "variance", "range"))
MEDIAN, MODE, MINORITY, VARIETY = (STAT_CODES[s] for s in ("median", "mode", "minority", "variety"))
CV, SKEWNESS, KURTOSIS, FRAC = (STAT_CODES[s] for s in ("cv", "skewness", "kurtosis", "frac"))

#: Slots of a zone's ``prepared`` quantities, a tuple of floats (a tuple rather than an
#: array: it stays in registers, and the dispatch, inlined, reads only what a column
#: needs): valid pixels, pixcount (valid pixels, or Σw), min, max, sum (Σv or Σw·v),
#: mean, variance, the third and fourth central moments (Σ(v − mean)ᵏ / N, weighted
#: alike), mode, minority, variety. A slot a zone's statistics do not need may hold 0.
PREPARED = ("valid", "pixcount", "min", "max", "sum", "mean", "variance", "m3", "m4", "mode",
            "minority", "variety")
(P_VALID, P_COUNT, P_MIN, P_MAX, P_SUM, P_MEAN, P_VARIANCE, P_M3, P_M4, P_MODE, P_MINORITY,
 P_VARIETY) = range(len(PREPARED))


@njit(cache=True, nogil=True, inline="always")  # called per column and zone: no call cost
def column_value(code, prepared, quantile_values, percentile_index, missing):
    """The value of statistic ``code`` of a zone from its ``prepared`` quantities;
    ``quantile_values[i]`` is percentile ``i`` of the plan, the last one the median.
    A zone without a valid pixel has pixcount 0 (or Σw = 0) and ``missing``
    elsewhere; undefined values (cv of a zero mean, skewness and kurtosis of equal
    values) are ``missing`` too."""
    if code == PIXCOUNT:
        return prepared[P_COUNT]
    if prepared[P_VALID] == 0:
        return missing
    if code == MIN:
        return prepared[P_MIN]
    if code == MAX:
        return prepared[P_MAX]
    if code == SUM:
        return prepared[P_SUM]
    if code == MEAN:
        return prepared[P_MEAN]
    if code == STDDEV:
        return math.sqrt(prepared[P_VARIANCE])
    if code == VARIANCE:
        return prepared[P_VARIANCE]
    if code == RANGE:
        return prepared[P_MAX] - prepared[P_MIN]
    if code == MEDIAN:
        return quantile_values[quantile_values.shape[0] - 1]
    if code == PERCENTILE:
        return quantile_values[percentile_index]
    if code == MODE:
        return prepared[P_MODE]
    if code == MINORITY:
        return prepared[P_MINORITY]
    if code == VARIETY:
        return prepared[P_VARIETY]
    if code == CV:
        if prepared[P_MEAN] == 0.0:
            return missing
        return math.sqrt(prepared[P_VARIANCE]) / prepared[P_MEAN]
    if code == SKEWNESS or code == KURTOSIS:
        variance = prepared[P_VARIANCE]
        if prepared[P_MIN] == prepared[P_MAX] or variance <= 0.0:
            return missing
        if code == SKEWNESS:
            return prepared[P_M3] / (variance * math.sqrt(variance))
        return prepared[P_M4] / (variance * variance) - 3.0
    raise ValueError("Internal error: a statistics kernel was given an unknown statistic code")


@njit(cache=True, nogil=True)
def check_codes(table):
    """Raise unless every column code of ``table`` (rows: band index, code, percentile
    index) is one :func:`column_value` knows (the kernels call this first)."""
    for c in range(table.shape[0]):
        code = table[c, 1]
        if code < 0 or code > PERCENTILE or code == FRAC:
            raise ValueError("Internal error: a statistics kernel was given an unknown "
                             "statistic code")


@njit(cache=True, nogil=True)
def add_class_share(pairs, count, zone, band, value, share):
    """Append the row (zone, band index, class value, share) to ``pairs`` at ``count``,
    growing it when full; returns (pairs, count + 1)."""
    if count == pairs.shape[0]:
        grown = np.empty((max(2 * count, 64), 4), np.float64)
        grown[:count] = pairs[:count]
        pairs = grown
    pairs[count, 0] = zone
    pairs[count, 1] = band
    pairs[count, 2] = value
    pairs[count, 3] = share
    return pairs, count + 1
