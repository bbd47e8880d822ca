"""numba kernels computing the statistics of zones from their pixel values.

The caller gathers each zone's pixels into one contiguous run of a
``values`` array of shape (bands, n); :func:`zone_statistics` then fills one
row per output column of a ``results`` array (columns, zone ids) in float64.
Definitions are those of :mod:`.statistics` (population variance,
``inverted_cdf`` or ``linear`` percentiles as numpy computes them, mode and
minority ties to the smallest value).
"""

import math

import numpy as np
from numba import njit

from .statistics import NEED_MOMENTS, NEED_ORDER, PERCENTILE, STAT_CODES

PIXCOUNT, MIN, MAX, SUM = (STAT_CODES[s] for s in ("pixcount", "min", "max", "sum"))
MEAN, STDDEV, VARIANCE, RANGE = (STAT_CODES[s] for s in ("mean", "stddev", "variance", "range"))
MEDIAN, MODE, MINORITY, VARIETY = (STAT_CODES[s] for s in ("median", "mode", "minority", "variety"))
#: Integer values are counting-sorted when max - min < 4 n + this.
COUNTING_SORT_SLACK = 4096


@njit(cache=True, nogil=True)
def sort_prefix(values, n, is_int, counts):
    """Sort ``values[:n]`` in place; counting sort for integers of small span.

    ``counts`` is a reusable zeroed int64 buffer; a larger one is returned
    when it was too small.
    """
    if n < 2:
        return counts
    if is_int:
        lo = values[0]
        hi = values[0]
        for i in range(1, n):
            v = values[i]
            if v < lo:
                lo = v
            elif v > hi:
                hi = v
        span = np.int64(hi) - np.int64(lo)
        if span < 4 * n + COUNTING_SORT_SLACK:
            if counts.shape[0] < span + 1:
                counts = np.zeros(max(span + 1, 2 * counts.shape[0]), np.int64)
            for i in range(n):
                counts[np.int64(values[i]) - np.int64(lo)] += 1
            position = 0
            for offset in range(span + 1):
                c = counts[offset]
                if c:
                    counts[offset] = 0
                    v = np.int64(lo) + offset
                    for _ in range(c):
                        values[position] = v
                        position += 1
            return counts
    values[:n].sort()
    return counts


@njit(cache=True, nogil=True)
def percentile_of_sorted(ordered, n, q, linear):
    """Quantile ``q`` (0..1) of ``ordered[:n]``, as numpy's ``inverted_cdf`` or ``linear``."""
    if linear:
        virtual = (n - 1) * q
        if virtual >= n - 1:
            return float(ordered[n - 1])
        if virtual < 0:
            return float(ordered[0])
        below = math.floor(virtual)
        gamma = virtual - below
        a = float(ordered[int(below)])
        b = float(ordered[int(below) + 1])
        diff = b - a
        if gamma >= 0.5:
            return b - diff * (1.0 - gamma)
        return a + diff * gamma
    virtual = n * q - 1.0
    below = math.floor(virtual)
    index = int(below) if virtual - below == 0.0 else int(below) + 1
    if index < 0:
        index = 0
    if index > n - 1:
        index = n - 1
    return float(ordered[index])


@njit(cache=True, nogil=True)
def zone_statistics(ids, starts, lengths, values, nodata, has_nodata, is_int, table,
                    quantiles, linear, band_needs, results, missing):
    """Statistics of every zone ``ids[z]`` from ``values[:, starts[z]:starts[z]+lengths[z]]``.

    Invalid pixels (NaN, or equal to the band's nodata) are skipped. Zones
    without a valid pixel get ``missing`` in every column but pixcount (0).
    ``table`` rows are (band index, statistic code, percentile index).
    """
    n_columns = table.shape[0]
    n_bands = values.shape[0]
    longest = 0
    for z in range(ids.shape[0]):
        longest = max(longest, lengths[z])
    scratch = np.empty(longest, values.dtype)
    counts = np.zeros(1024, np.int64)
    for z in range(ids.shape[0]):
        zone = ids[z]
        start = starts[z]
        stop = start + lengths[z]
        for b in range(n_bands):
            needs = band_needs[b]
            n = 0
            lo = 0.0
            hi = 0.0
            total = 0.0
            for i in range(start, stop):
                v = values[b, i]
                if v != v or (has_nodata[b] and v == nodata[b]):
                    continue
                scratch[n] = v
                fv = float(v)
                if n == 0:
                    lo = fv
                    hi = fv
                elif fv < lo:
                    lo = fv
                elif fv > hi:
                    hi = fv
                total += fv
                n += 1
            mean = 0.0
            variance = 0.0
            if n > 0 and needs & NEED_MOMENTS:
                mean = total / n
                squares = 0.0
                for i in range(n):
                    d = float(scratch[i]) - mean
                    squares += d * d
                variance = squares / n
            if n > 0 and needs & NEED_ORDER:
                counts = sort_prefix(scratch, n, is_int, counts)
            for c in range(n_columns):
                if table[c, 0] != b:
                    continue
                code = table[c, 1]
                if code == PIXCOUNT:
                    results[c, zone] = n
                    continue
                if n == 0:
                    results[c, zone] = missing
                    continue
                if code == MIN:
                    value = lo
                elif code == MAX:
                    value = hi
                elif code == SUM:
                    value = total
                elif code == MEAN:
                    value = mean
                elif code == STDDEV:
                    value = math.sqrt(variance)
                elif code == VARIANCE:
                    value = variance
                elif code == RANGE:
                    value = hi - lo
                elif code == MEDIAN:
                    value = percentile_of_sorted(scratch, n, 0.5, linear)
                elif code == PERCENTILE:
                    value = percentile_of_sorted(scratch, n, quantiles[table[c, 2]], linear)
                else:
                    value = run_statistic(scratch, n, code)
                results[c, zone] = value
    return counts.shape[0]


@njit(cache=True, nogil=True)
def run_statistic(ordered, n, code):
    """Mode, minority or variety of ``ordered[:n]`` from its runs of equal values."""
    best_value = float(ordered[0])
    best_count = -1
    runs = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and ordered[j] == ordered[i]:
            j += 1
        count = j - i
        runs += 1
        if code == MODE and count > best_count:
            best_count = count
            best_value = float(ordered[i])
        elif code == MINORITY and (best_count < 0 or count < best_count):
            best_count = count
            best_value = float(ordered[i])
        i = j
    if code == VARIETY:
        return float(runs)
    return best_value
