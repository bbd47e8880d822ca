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
- variety: the number of distinct values with w > 0.

Invalid pixels (NaN, or the band's nodata) are skipped; all sums in float64.
"""


import numpy as np
from numba import njit

from .stat_kernels import (
    MEDIAN,
    MODE,
    PIXCOUNT,
    VARIETY,
    is_moment,
    moment_value,
)
from .statistics import NEED_MOMENTS, NEED_ORDER, PERCENTILE


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
    """Weighted statistics of every zone ``ids[z]`` (see the module docstring)."""
    n_columns = table.shape[0]
    n_bands = values.shape[0]
    longest = 0
    for z in range(ids.shape[0]):
        longest = max(longest, lengths[z])
    scratch = np.empty(longest, np.float64)
    scratch_w = np.empty(longest, np.float64)
    distinct = np.empty(longest, np.float64)
    distinct_w = np.empty(longest, np.float64)
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
            mean = 0.0
            variance = 0.0
            if n > 0 and needs & NEED_MOMENTS:
                mean = sum_wv / sum_w
                squares = 0.0
                for i in range(n):
                    d = scratch[i] - mean
                    squares += scratch_w[i] * d * d
                variance = squares / sum_w
            n_distinct = 0
            if n > 0 and needs & NEED_ORDER:
                order = np.argsort(scratch[:n])
                for i in range(n):
                    v = scratch[order[i]]
                    if n_distinct > 0 and distinct[n_distinct - 1] == v:
                        distinct_w[n_distinct - 1] += scratch_w[order[i]]
                    else:
                        distinct[n_distinct] = v
                        distinct_w[n_distinct] = scratch_w[order[i]]
                        n_distinct += 1
            for c in range(n_columns):
                if table[c, 0] != b:
                    continue
                code = table[c, 1]
                if code == PIXCOUNT:
                    results[c, zone] = sum_w
                    continue
                if n == 0:
                    results[c, zone] = missing
                    continue
                if is_moment(code):
                    value = moment_value(code, lo, hi, sum_wv, mean, variance)
                elif code == MEDIAN:
                    value = weighted_quantile(distinct, distinct_w, n_distinct, 0.5)
                elif code == PERCENTILE:
                    value = weighted_quantile(distinct, distinct_w, n_distinct,
                                              quantiles[table[c, 2]])
                elif code == VARIETY:
                    value = float(n_distinct)
                else:
                    value = _by_weight(distinct, distinct_w, n_distinct, code == MODE)
                results[c, zone] = value


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

