"""numba kernel computing coverage-weighted statistics of zones (pixel rule
``fraction``), beside :func:`.stat_kernels.zone_statistics`.

Same calling convention as ``zone_statistics`` plus one weight per pixel
(``weights[i]`` > 0, the pixel's covered fraction). Definitions, chosen to
equal exactextract's (and GDAL's ``zonal-stats`` fractional mode):

- pixcount: Σw (the covered area in pixels); sum: Σw·v; mean: Σw·v / Σw;
- variance, stddev: weighted population forms Σw·(v − mean)² / Σw;
- min, max, range: over the pixels with w > 0, unweighted;
- median and percentiles: exactextract's weighted quantile over the distinct
  values v_i (sorted) with summed weights w_i: s_i = i·w_i + (n − 1)·Σ_{j<i} w_j,
  interpolated linearly at q·(n − 1)·Σw (numpy's ``linear`` when all weights
  are equal);
- mode / minority: the value with the largest / smallest summed weight, ties
  to the smallest value (exactextract breaks mode ties to the largest);
- variety: the number of distinct values with w > 0;
- cv, skewness, kurtosis: from the weighted mean and central moments
  Σw·(v − mean)ᵏ / Σw (cv as exactextract's ``coefficient_of_variation``);
- frac: Σw of each value / Σw (exactextract's ``frac``).

Columns are computed by :func:`.column_values.column_value`, as in the plain kernel.
Invalid pixels (NaN, or the band's nodata) are skipped; all sums in float64.
"""


import numpy as np
from numba import njit

from .catalogue import (
    NEED_CLASSES,
    NEED_MEDIAN,
    NEED_MINORITY,
    NEED_MODE,
    NEED_MOMENTS,
    NEED_ORDER,
    NEED_RUNS,
    NEED_SHAPE,
)
from .column_values import add_class_share, check_codes, column_value
from .value_order import bucket_sort_pairs, bucket_table

#: What needs the distinct values and their summed weights.
NEED_DISTINCT = NEED_ORDER | NEED_RUNS | NEED_CLASSES


@njit(cache=True, nogil=True)
def weighted_quantile(values, weights, n, q):
    """exactextract's weighted quantile ``q`` (0..1) of distinct sorted ``values[:n]``
    with summed ``weights[:n]``."""
    if n == 1:
        return values[0]
    sum_w = 0.0
    for i in range(n):
        sum_w += weights[i]
    target = q * (sum_w * (n - 1.0))
    cumsum = 0.0
    previous_s = 0.0
    for i in range(n):
        s = 0.0 if i == 0 else i * weights[i] + (n - 1.0) * cumsum
        cumsum += weights[i]
        if s > target:
            if i == 0:
                return values[0]
            return values[i - 1] + (target - previous_s) * (values[i] - values[i - 1]) / (
                s - previous_s)
        previous_s = s
    return values[n - 1]


@njit(cache=True, nogil=True)
def weighted_zone_statistics(ids, starts, lengths, values, weights, nodata, has_nodata, table,
                             quantiles, band_needs, results, missing):
    """Weighted statistics of every zone ``ids[z]`` (see the module docstring); returns
    the class shares as :func:`.stat_kernels.zone_statistics` does."""
    check_codes(table)
    n_columns = table.shape[0]
    n_bands = values.shape[0]
    longest = 0
    for z in range(ids.shape[0]):
        longest = max(longest, lengths[z])
    scratch = np.empty(longest, np.float64)
    scratch_w = np.empty(longest, np.float64)
    distinct = np.empty(longest, np.float64)
    distinct_w = np.empty(longest, np.float64)
    buckets = bucket_table(longest)
    n_q = quantiles.shape[0]
    quantile_values = np.zeros(n_q + 1, np.float64)
    pairs = np.empty((0, 4), np.float64)
    n_pairs = 0
    for z in range(ids.shape[0]):
        zone = ids[z]
        start = starts[z]
        stop = start + lengths[z]
        for b in range(n_bands):
            needs = band_needs[b]
            n = 0
            lo = 0.0
            hi = 0.0
            sum_w = 0.0
            sum_wv = 0.0
            for i in range(start, stop):
                v = values[b, i]
                w = np.float64(weights[i])
                if v != v or w <= 0.0 or (has_nodata[b] and v == nodata[b]):
                    continue
                fv = np.float64(v)
                scratch[n] = fv
                scratch_w[n] = w
                if n == 0 or fv < lo:
                    lo = fv
                if n == 0 or fv > hi:
                    hi = fv
                sum_w += w
                sum_wv += w * fv
                n += 1
            mean = variance = m3 = m4 = mode = minority = variety = 0.0
            if n > 0 and needs & NEED_MOMENTS:
                mean = sum_wv / sum_w
                squares = 0.0
                for i in range(n):
                    d = scratch[i] - mean
                    squares += scratch_w[i] * d * d
                variance = squares / sum_w
                if needs & NEED_SHAPE:  # a loop of its own: the one above stays lean
                    cubes = 0.0
                    fourths = 0.0
                    for i in range(n):
                        d = scratch[i] - mean
                        cubes += scratch_w[i] * d * d * d
                        fourths += scratch_w[i] * d * d * d * d
                    m3 = cubes / sum_w
                    m4 = fourths / sum_w
            if n > 0 and needs & NEED_DISTINCT:
                n_distinct = distinct_values(scratch, scratch_w, n, lo, hi, distinct, distinct_w,
                                             buckets)
                variety = float(n_distinct)
                if needs & NEED_MODE:
                    mode = _by_weight(distinct, distinct_w, n_distinct, True)
                if needs & NEED_MINORITY:
                    minority = _by_weight(distinct, distinct_w, n_distinct, False)
                if needs & NEED_ORDER:
                    for i in range(n_q + 1 if needs & NEED_MEDIAN else n_q):
                        quantile_values[i] = weighted_quantile(
                            distinct, distinct_w, n_distinct, quantiles[i] if i < n_q else 0.5)
                if needs & NEED_CLASSES:
                    for i in range(n_distinct):
                        pairs, n_pairs = add_class_share(pairs, n_pairs, zone, b, distinct[i],
                                                         distinct_w[i] / sum_w)
            prepared = (float(n), sum_w, lo, hi, sum_wv, mean, variance, m3, m4, mode, minority,
                        variety)
            for c in range(n_columns):
                if table[c, 0] == b:
                    results[c, zone] = column_value(table[c, 1], prepared, quantile_values,
                                                    table[c, 2], missing)
    return pairs[:n_pairs]


@njit(cache=True, nogil=True)
def distinct_values(values, weights, n, lo, hi, distinct, distinct_w, buckets):
    """The distinct values of ``values[:n]`` (between ``lo`` and ``hi``) in ascending
    order, with their summed weights (added in pixel order), into ``distinct`` and
    ``distinct_w``; returns how many. ``buckets`` is a :func:`.value_order.bucket_table`."""
    bucket_sort_pairs(values, weights, n, lo, hi, distinct, distinct_w, buckets)
    n_distinct = 0
    for i in range(n):  # in place: n_distinct <= i
        v = distinct[i]
        w = distinct_w[i]
        if n_distinct > 0 and distinct[n_distinct - 1] == v:
            distinct_w[n_distinct - 1] += w
        else:
            distinct[n_distinct] = v
            distinct_w[n_distinct] = w
            n_distinct += 1
    return n_distinct


@njit(cache=True, nogil=True)
def _by_weight(distinct, distinct_w, n, largest):
    """The value with the largest (mode) or smallest (minority) summed weight,
    ties to the smallest value (values are sorted ascending)."""
    best = 0
    for i in range(1, n):
        if (largest and distinct_w[i] > distinct_w[best]) or (
                not largest and distinct_w[i] < distinct_w[best]):
            best = i
    return distinct[best]

