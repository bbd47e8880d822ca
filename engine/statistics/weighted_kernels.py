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
from .value_order import bucket_table, distinct_sorted
from .weighted_selection import selection_work, weighted_quantiles_by_buckets

#: What needs the distinct values and their summed weights.
NEED_DISTINCT = NEED_ORDER | NEED_RUNS | NEED_CLASSES
#: What needs every distinct value (quantiles alone do not: weighted_selection).
NEED_ALL_DISTINCT = NEED_RUNS | NEED_CLASSES


@njit(cache=True, nogil=True)
def weighted_quantiles(values, weights, n, sum_w, quantiles, by_quantile, count, out):
    """exactextract's weighted quantiles of distinct sorted ``values[:n]`` with summed
    ``weights[:n]`` (their sum, in order, ``sum_w``): ``out[j]`` = quantile
    ``quantiles[j]`` (0..1) for every ``j < count``, found in one pass visiting the
    quantiles in ascending order ``by_quantile``.

    s_i = i·w_i + (n − 1)·Σ_{j<i} w_j; quantile q is interpolated between the values
    around the first s_i above q·Σw·(n − 1)."""
    if n == 1:
        for j in range(count):
            out[j] = values[0]
        return
    scaled = sum_w * (n - 1.0)
    i = 0  # the first index whose s may exceed the next target
    s = 0.0
    cumsum = 0.0  # weights below i
    previous_s = 0.0
    for k in range(by_quantile.shape[0]):
        j = by_quantile[k]
        if j >= count:
            continue
        target = quantiles[j] * scaled
        while i < n and not s > target:
            cumsum += weights[i]
            previous_s = s
            i += 1
            if i < n:
                s = i * weights[i] + (n - 1.0) * cumsum
        if i == n:
            out[j] = values[n - 1]
        elif i == 0:
            out[j] = values[0]
        else:
            out[j] = values[i - 1] + (target - previous_s) * (values[i] - values[i - 1]) / (
                s - previous_s)


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
    bucket_ids = np.empty(longest, np.int32)
    selection = selection_work(buckets, distinct, distinct_w, bucket_ids)
    mantissa_bits = 23 if weights.itemsize == 4 else 52
    n_q = quantiles.shape[0]
    quantile_values = np.zeros(n_q + 1, np.float64)
    every_quantile = np.append(quantiles, 0.5)  # the median last
    by_quantile = np.argsort(every_quantile, kind="mergesort")
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
            count = n_q + 1 if needs & NEED_MEDIAN else n_q
            if n > 0 and needs & NEED_DISTINCT and not needs & NEED_ALL_DISTINCT and \
                    weighted_quantiles_by_buckets(scratch, scratch_w, n, lo, hi, sum_w,
                                                  every_quantile, by_quantile, count,
                                                  quantile_values, mantissa_bits, selection):
                pass  # the quantiles, without every value in order
            elif n > 0 and needs & NEED_DISTINCT:
                n_distinct, distinct_sum = distinct_sorted(scratch, scratch_w, n, lo, hi,
                                                           distinct, distinct_w, buckets,
                                                           bucket_ids)
                variety = float(n_distinct)
                if needs & NEED_MODE:
                    mode = _by_weight(distinct, distinct_w, n_distinct, True)
                if needs & NEED_MINORITY:
                    minority = _by_weight(distinct, distinct_w, n_distinct, False)
                if needs & NEED_ORDER:
                    weighted_quantiles(distinct, distinct_w, n_distinct, distinct_sum,
                                       every_quantile, by_quantile, count, quantile_values)
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
def _by_weight(distinct, distinct_w, n, largest):
    """The value with the largest (mode) or smallest (minority) summed weight,
    ties to the smallest value (values are sorted ascending)."""
    best = 0
    for i in range(1, n):
        if (largest and distinct_w[i] > distinct_w[best]) or (
                not largest and distinct_w[i] < distinct_w[best]):
            best = i
    return distinct[best]

