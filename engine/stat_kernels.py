"""numba kernels computing the statistics of zones from their pixel values.

The caller gathers each zone's pixels into one contiguous run of a
``values`` array of shape (bands, n); :func:`zone_statistics` then fills one
row per output column of a ``results`` array (columns, zone ids) in float64.
Definitions are those of :mod:`.statistics` (population variance,
``inverted_cdf`` or ``linear`` percentiles as numpy computes them, mode and
minority ties to the smallest value).

Order statistics of integer values whose span is small next to their count
come from one counting pass and one scan of the counts; other values are
sorted.
"""

import math

import numpy as np
from numba import njit

from .statistics import NEED_MOMENTS, NEED_ORDER, NEED_RUNS, STAT_CODES

PIXCOUNT, MIN, MAX, SUM = (STAT_CODES[s] for s in ("pixcount", "min", "max", "sum"))
MEAN, STDDEV, VARIANCE, RANGE = (STAT_CODES[s] for s in ("mean", "stddev", "variance", "range"))
MEDIAN, MODE, MINORITY, VARIETY = (STAT_CODES[s] for s in ("median", "mode", "minority", "variety"))
#: Integer values are counted rather than sorted when max - min < 4 n + this.
COUNTING_SLACK = 4096


@njit(cache=True, nogil=True)
def is_moment(code):
    """Whether statistic ``code`` is one :func:`moment_value` gives."""
    return code in (MIN, MAX, SUM, MEAN, STDDEV, VARIANCE, RANGE)


@njit(cache=True, nogil=True)
def moment_value(code, lo, hi, total, mean, variance):
    """min, max, sum, mean, stddev, variance or range from a zone's moments."""
    if code == MIN:
        return lo
    if code == MAX:
        return hi
    if code == SUM:
        return total
    if code == MEAN:
        return mean
    if code == STDDEV:
        return math.sqrt(variance)
    if code == VARIANCE:
        return variance
    return hi - lo


@njit(cache=True, nogil=True)
def quantile_ranks(n, q, linear):
    """(lower rank, upper rank, weight) of quantile ``q`` of ``n`` ordered values, as
    numpy's ``linear`` or ``inverted_cdf``; the value is lerp(lower, upper, weight)."""
    if linear:
        virtual = (n - 1) * q
        if virtual >= n - 1:
            return n - 1, n - 1, 0.0
        if virtual < 0:
            return 0, 0, 0.0
        below = math.floor(virtual)
        return int(below), int(below) + 1, virtual - below
    virtual = n * q - 1.0
    below = math.floor(virtual)
    index = int(below) if virtual - below == 0.0 else int(below) + 1
    index = min(max(index, 0), n - 1)
    return index, index, 0.0


@njit(cache=True, nogil=True)
def lerp(a, b, weight):
    """numpy's interpolation between two ordered values."""
    if weight == 0.0:
        return a
    diff = b - a
    if weight >= 0.5:
        return b - diff * (1.0 - weight)
    return a + diff * weight


@njit(cache=True, nogil=True)
def percentile_of_sorted(ordered, n, q, linear):
    """Quantile ``q`` (0..1) of ``ordered[:n]``."""
    lower, upper, weight = quantile_ranks(n, q, linear)
    return lerp(float(ordered[lower]), float(ordered[upper]), weight)


@njit(cache=True, nogil=True)
def zone_statistics(ids, starts, lengths, values, nodata, has_nodata, is_int, table,
                    quantiles, linear, band_needs, results, missing):
    """Statistics of every zone ``ids[z]`` from ``values[:, starts[z]:starts[z]+lengths[z]]``.

    Invalid pixels (NaN, or equal to the band's nodata) are skipped. Zones
    without a valid pixel get ``missing`` in every column but pixcount (0).
    ``table`` rows are (band index, statistic code, percentile index);
    ``quantiles`` are the percentiles / 100. Returns the number of zones.
    """
    n_columns = table.shape[0]
    n_bands = values.shape[0]
    longest = 0
    for z in range(ids.shape[0]):
        longest = max(longest, lengths[z])
    scratch = np.empty(longest, values.dtype)
    counts = np.zeros(COUNTING_SLACK, np.int64)
    # 8- and 16-bit integers are counted while they are read, in a table of every value
    direct = is_int and values.itemsize <= 2
    direct_base = integer_minimum(values) if direct else 0
    direct_counts = np.zeros(1 << (8 * values.itemsize) if direct else 1, np.int64)
    # quantile i < n_q is quantiles[i]; quantile n_q is the median
    n_q = quantiles.shape[0]
    lower = np.empty(n_q + 1, np.int64)
    upper = np.empty(n_q + 1, np.int64)
    weight = np.empty(n_q + 1, np.float64)
    wanted = np.empty(2 * n_q + 2, np.int64)
    wanted_value = np.empty(2 * n_q + 2, np.float64)
    order = np.empty(2 * n_q + 2, np.int64)
    for z in range(ids.shape[0]):
        zone = ids[z]
        start = starts[z]
        stop = start + lengths[z]
        for b in range(n_bands):
            needs = band_needs[b]
            want_order = needs & (NEED_ORDER | NEED_RUNS) != 0
            count_now = direct and want_order
            n = 0
            lo = 0.0
            hi = 0.0
            total = 0.0
            check_nodata = has_nodata[b]
            band_nodata = nodata[b]
            for i in range(start, stop):
                v = values[b, i]
                if v != v or (check_nodata and v == band_nodata):
                    continue
                if count_now:
                    direct_counts[np.int64(v) - direct_base] += 1
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
            mean = total / n if n > 0 else 0.0
            squares = 0.0
            mode = minority = 0.0
            variety = 0
            need_moments = n > 0 and needs & NEED_MOMENTS
            if n > 0 and want_order:
                for i in range(n_q + 1):
                    q = quantiles[i] if i < n_q else 0.5
                    lower[i], upper[i], weight[i] = quantile_ranks(n, q, linear)
                    wanted[2 * i] = lower[i]
                    wanted[2 * i + 1] = upper[i]
                argsort_small(wanted, order)
                span = int(hi - lo) if is_int else -1
                counted = is_int and span < 4 * n + COUNTING_SLACK
                if count_now and not counted:  # too spread out: undo the counting
                    for i in range(start, stop):
                        v = values[b, i]
                        if not (check_nodata and v == band_nodata):
                            direct_counts[np.int64(v) - direct_base] = 0
                if counted:
                    if count_now:
                        counted_values = direct_counts[np.int64(lo) - direct_base:]
                    else:
                        copy_valid(values, b, start, stop, check_nodata, band_nodata, scratch)
                        if counts.shape[0] < span + 1:
                            counts = np.zeros(span + 1, np.int64)
                        low = np.int64(lo)
                        for i in range(n):
                            counts[np.int64(scratch[i]) - low] += 1
                        counted_values = counts
                    squares, mode, minority, variety = scan_counts(
                        counted_values, span, lo, mean, need_moments, needs & NEED_RUNS != 0,
                        wanted, order, wanted_value)
                    need_moments = False
                else:
                    copy_valid(values, b, start, stop, check_nodata, band_nodata, scratch)
                    scratch[:n].sort()
                    for i in range(wanted.shape[0]):
                        wanted_value[i] = float(scratch[wanted[i]])
                    if needs & NEED_RUNS:
                        mode, minority, variety = scan_runs(scratch, n)
            if need_moments:
                for i in range(start, stop):
                    v = values[b, i]
                    if v != v or (check_nodata and v == band_nodata):
                        continue
                    d = float(v) - mean
                    squares += d * d
            variance = squares / n if n > 0 else 0.0
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
                if is_moment(code):
                    value = moment_value(code, lo, hi, total, mean, variance)
                elif code == MODE:
                    value = mode
                elif code == MINORITY:
                    value = minority
                elif code == VARIETY:
                    value = float(variety)
                else:
                    i = n_q if code == MEDIAN else table[c, 2]
                    value = lerp(wanted_value[2 * i], wanted_value[2 * i + 1], weight[i])
                results[c, zone] = value
    return ids.shape[0]


@njit(cache=True, nogil=True)
def integer_minimum(values):
    """The smallest value of the integer type of ``values`` (0 when unsigned)."""
    probe = np.zeros(1, values.dtype)
    probe[0] -= 1  # wraps around for unsigned types
    if probe[0] > 0:
        return 0
    return -(1 << (8 * values.itemsize - 1))


@njit(cache=True, nogil=True)
def copy_valid(values, band, start, stop, check_nodata, nodata, out):
    """Copy the valid values of ``values[band, start:stop]`` to ``out``; returns their count."""
    n = 0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or (check_nodata and v == nodata):
            continue
        out[n] = v
        n += 1
    return n


@njit(cache=True, nogil=True)
def argsort_small(keys, order):
    """Insertion argsort of a few keys into ``order`` (no allocation)."""
    for i in range(keys.shape[0]):
        j = i
        while j > 0 and keys[order[j - 1]] > keys[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@njit(cache=True, nogil=True)
def scan_counts(counts, span, lo, mean, need_moments, need_runs, wanted, order, wanted_value):
    """One pass over value counts ``counts[0..span]`` (value = lo + offset), clearing
    them: the values at the ranks ``wanted`` (visited in ``order``), the sum of
    squared deviations from ``mean``, and mode, minority and variety.

    The loop avoids data-dependent branches: most counts are small and
    scattered, and mispredictions would dominate.
    """
    squares = 0.0
    mode_offset = 0
    minority_offset = 0
    mode_count = -1
    minority_count = np.iinfo(np.int64).max
    variety = 0
    seen = 0
    w = 0
    n_wanted = wanted.shape[0]
    next_rank = wanted[order[0]]
    for offset in range(span + 1):
        c = counts[offset]
        counts[offset] = 0
        seen += c
        if need_moments:
            d = lo + offset - mean
            squares += c * d * d
        if need_runs:
            variety += c > 0
            better = c > mode_count
            mode_offset = offset if better else mode_offset
            mode_count = c if better else mode_count
            rarer = (c > 0) & (c < minority_count)
            minority_offset = offset if rarer else minority_offset
            minority_count = c if rarer else minority_count
        while next_rank < seen:  # rare: a wanted rank falls in this value
            wanted_value[order[w]] = lo + offset
            w += 1
            next_rank = wanted[order[w]] if w < n_wanted else np.iinfo(np.int64).max
    return squares, lo + mode_offset, lo + minority_offset, variety


@njit(cache=True, nogil=True)
def scan_runs(ordered, n):
    """Mode, minority (ties to the smallest) and variety of ``ordered[:n]``."""
    mode = minority = float(ordered[0])
    mode_count = -1
    minority_count = n + 1
    variety = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and ordered[j] == ordered[i]:
            j += 1
        count = j - i
        variety += 1
        if count > mode_count:
            mode_count = count
            mode = float(ordered[i])
        if count < minority_count:
            minority_count = count
            minority = float(ordered[i])
        i = j
    return mode, minority, variety


class ZoneStatsRunner:
    """Run :func:`zone_statistics` for one plan, splitting big batches of zones
    between the calling thread and a helper thread (the kernel releases the GIL;
    zones are disjoint, so their results rows never clash)."""

    #: Batches with fewer pixels than this are not worth splitting.
    SPLIT_PIXELS = 1 << 16

    def __init__(self, plan, nodata, results, missing, threads=2):
        self.nodata = np.array([np.nan if v is None else v for v in nodata], np.float64)
        self.has_nodata = np.array([v is not None for v in nodata], np.bool_)
        self.is_int = plan.image_dtype.kind in "iu"
        self.table = plan.kernel_table()
        self.quantiles = np.true_divide(np.array(plan.percentiles, np.float64), 100)
        self.linear = plan.method == "linear"
        self.needs = plan.band_needs()
        self.results = results
        self.missing = float(missing)
        self._pool = None
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-stats")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _run(self, ids, starts, lengths, values):
        zone_statistics(ids, starts, lengths, values, self.nodata, self.has_nodata, self.is_int,
                        self.table, self.quantiles, self.linear, self.needs, self.results,
                        self.missing)

    def add(self, ids, starts, lengths, values):
        """Compute the statistics of zones ``ids`` (pixels ``values[:, start:start+length]``)."""
        if self._pool is None or len(ids) < 2 or lengths.sum() < self.SPLIT_PIXELS:
            self._run(ids, starts, lengths, values)
            return
        half = int(np.searchsorted(np.cumsum(lengths), lengths.sum() // 2)) + 1
        half = min(max(half, 1), len(ids) - 1)
        other = self._pool.submit(self._run, ids[half:], starts[half:], lengths[half:], values)
        self._run(ids[:half], starts[:half], lengths[:half], values)
        other.result()
