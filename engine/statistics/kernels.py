"""numba kernels computing the statistics of zones from their pixel values.

The caller gathers each zone's pixels into one contiguous run of a
``values`` array of shape (bands, n); :func:`zone_statistics` then fills one
row per output column of a ``results`` array (columns, zone ids) in float64.
Definitions are those of :mod:`tessera.engine.statistics.catalogue` (population variance,
``inverted_cdf`` or ``linear`` percentiles as numpy computes them, mode and
minority ties to the smallest value).

8- and 16-bit integers take :func:`small_int_band`: exact integer sums for
the moments, and for order statistics, mode, minority and variety one pass
counting values in a table of the whole type. Other integers are counted
when their span is small next to their count; other values are spread over
buckets (:mod:`.value_order`): the values at the ranks asked come from the few
buckets holding them, without sorting the zone.
Result rows are gathered for blocks of zones before they are stored.

What a zone needs is prepared once per band (the ``NEED_*`` bits the
catalogue declares for the statistics asked), and every column is then
computed by :func:`.column_values.column_value`, the dispatch the weighted
kernel shares; class shares (``frac``) are returned as rows.
"""

import math

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
    NEED_VARIETY,
    ClassShares,
)
from .column_values import add_class_share, check_codes, column_value
from .value_order import bucket_sort, bucket_table, select_ranks

#: Integer values are counted rather than sorted when max - min < 4 n + this.
COUNTING_SLACK = 4096
#: Zones whose result rows are gathered before they are stored.
ZONE_BLOCK = 256
#: Rank walks over the counts of 8- and 16-bit values skip this many counts at a time.
WALK_STEP = 8
#: Zones up to this many pixels keep exact integer sums of squares (int64).
SMALL_INT_LIMIT = 1 << 31
#: (count, 8- or 16-bit value) pairs packed in one int64: count << KEY_BITS | value.
KEY_BITS = 20
KEY_MASK = (1 << KEY_BITS) - 1
#: An int64 that no 8- or 16-bit pixel equals.
NO_VALUE = np.int64(1 << 40)
VARIANCE_EXACT_LIMIT = np.iinfo(np.int64).max


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
    ``quantiles`` are the percentiles / 100; ``band_needs`` the NEED_* bits of
    each band. Returns the class shares (rows of zone, band index, value, share)
    of the bands needing them (NEED_CLASSES), else an empty (0, 4) array.
    """
    check_codes(table)
    n_columns = table.shape[0]
    n_bands = values.shape[0]
    longest = 0
    for z in range(ids.shape[0]):
        longest = max(longest, lengths[z])
    scratch = np.empty(longest + 1, values.dtype)
    counts = np.zeros(COUNTING_SLACK, np.int64)
    # 8- and 16-bit integers are counted while they are read, in a table of every value
    direct = is_int and values.itemsize <= 2
    direct_base = integer_minimum(values) if direct else 0
    # (WALK_STEP spare counts: rank walks may read past the last value)
    direct_counts = np.zeros((1 << (8 * values.itemsize) if direct else 0) + WALK_STEP, np.int32)
    # quantile i < n_q is quantiles[i]; quantile n_q is the median
    n_q = quantiles.shape[0]
    weight = np.empty(n_q + 1, np.float64)
    wanted = np.empty(2 * n_q + 2, np.int64)
    wanted_value = np.empty(2 * n_q + 2, np.float64)
    order = np.empty(2 * n_q + 2, np.int64)
    # ranks are sorted in the order of their quantiles: then they mostly come in order
    by_quantile = np.empty(2 * n_q + 2, np.int64)
    by_quantile[0::2] = 2 * np.argsort(np.append(quantiles, 0.5), kind="mergesort")
    by_quantile[1::2] = by_quantile[0::2] + 1
    ranks = (quantiles, linear, weight, wanted, order, wanted_value, by_quantile)
    # buckets of float (and widely spread integer) values, see value_order
    buckets = bucket_table(longest)
    compact = np.empty(longest, values.dtype)
    bucket_ids = np.empty(longest, np.int32)
    quantile_values = np.zeros(n_q + 1, np.float64)
    pairs = np.empty((0, 4), np.float64)
    n_pairs = 0
    # the columns of each band
    band_columns = np.zeros((n_bands, n_columns + 1), np.int64)  # count, then columns
    for c in range(n_columns):
        b = table[c, 0]
        band_columns[b, 0] += 1
        band_columns[b, band_columns[b, 0]] = c
    # rows are gathered for a block of zones, then stored: stores to scattered
    # result rows interleaved with the zones' reads stall them
    block = np.empty((ZONE_BLOCK, n_columns), np.float64)
    for block_start in range(0, ids.shape[0], ZONE_BLOCK):
        block_stop = min(block_start + ZONE_BLOCK, ids.shape[0])
        for z in range(block_start, block_stop):
            row = z - block_start
            start = starts[z]
            stop = start + lengths[z]
            for b in range(n_bands):
                needs = band_needs[b]
                band_nodata = nodata[b] if has_nodata[b] else np.nan
                if direct and stop - start < SMALL_INT_LIMIT:
                    n, lo, hi, total, variance, mode, minority, variety = small_int_band(
                        values, b, start, stop, band_nodata, needs, direct_base,
                        direct_counts, ranks, scratch)
                else:
                    n, lo, hi, total, variance, mode, minority, variety, counts = general_band(
                        values, b, start, stop, band_nodata, needs, is_int, ranks, scratch,
                        counts, (buckets, compact, bucket_ids))
                mean = total / n if n > 0 else 0.0
                m3 = m4 = 0.0
                if n > 0 and needs & NEED_SHAPE:
                    m3, m4 = central_moments(values, b, start, stop, band_nodata, mean, n)
                if n > 0 and needs & NEED_ORDER:
                    for i in range(n_q + 1 if needs & NEED_MEDIAN else n_q):
                        quantile_values[i] = lerp(wanted_value[2 * i], wanted_value[2 * i + 1],
                                                  weight[i])
                if n > 0 and needs & NEED_CLASSES:
                    pairs, n_pairs = class_shares(values, b, start, stop, band_nodata, scratch,
                                                  ids[z], pairs, n_pairs)
                # (a tuple: held in registers, see column_values.PREPARED)
                prepared = (float(n), float(n), lo, hi, total, mean, variance, m3, m4, mode,
                            minority, float(variety))
                for k in range(band_columns[b, 0]):
                    c = band_columns[b, k + 1]
                    block[row, c] = column_value(table[c, 1], prepared, quantile_values,
                                                 table[c, 2], missing)
        for z in range(block_start, block_stop):
            zone = ids[z]
            for c in range(n_columns):
                results[c, zone] = block[z - block_start, c]
    return pairs[:n_pairs]


@njit(cache=True, nogil=True)
def central_moments(values, band, start, stop, nodata, mean, n):
    """The third and fourth central moments Σ(v − mean)ᵏ / n of the valid pixels."""
    m3 = 0.0
    m4 = 0.0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        d = float(v) - mean
        d3 = d * d * d
        m3 += d3
        m4 += d3 * d
    return m3 / n, m4 / n


@njit(cache=True, nogil=True)
def class_shares(values, band, start, stop, nodata, scratch, zone, pairs, n_pairs):
    """Append (zone, band, value, share of the valid pixels) for every distinct valid
    value of ``values[band, start:stop]`` to ``pairs``; returns (pairs, rows used)."""
    n = copy_valid(values, band, start, stop, True, nodata, scratch)
    ordered = scratch[:n]
    ordered.sort()
    i = 0
    while i < n:
        j = i + 1
        while j < n and ordered[j] == ordered[i]:
            j += 1
        pairs, n_pairs = add_class_share(pairs, n_pairs, zone, band, float(ordered[i]),
                                         (j - i) / n)
        i = j
    return pairs, n_pairs


@njit(cache=True, nogil=True, inline='always')
def rank_plan(n, ranks):
    """Fill the ranks to look up among ``n`` ordered values: ``wanted`` (lower and
    upper rank of each quantile, the median last), their ``weight`` and the
    ascending ``order`` of the ranks (sorted from ``by_quantile``, the ranks in
    the order of their quantiles)."""
    quantiles, linear, weight, wanted, order, _, by_quantile = ranks
    n_q = quantiles.shape[0]
    for i in range(n_q + 1):
        q = quantiles[i] if i < n_q else 0.5
        lower, upper, share = quantile_ranks(n, q, linear)
        wanted[2 * i] = lower
        wanted[2 * i + 1] = upper
        weight[i] = share
    argsort_small(wanted, by_quantile, order)


@njit(cache=True, nogil=True, inline='always')
def small_int_band(values, band, start, stop, nodata, needs, base, counts, ranks, scratch):
    """Statistics of the valid pixels of an 8- or 16-bit integer band: exact integer
    sums for the moments, then (for order statistics, mode, minority or
    variety) one pass counting every value in ``counts`` (indexed by value -
    ``base``, left zeroed); the mode is kept while counting, ranks are found
    by walking the counts, the variety while clearing them.
    ``ranks`` is (quantiles, linear, weight, wanted, order, wanted_value,
    by_quantile), see :func:`rank_plan`. Returns (valid pixels, min, max, sum, variance, mode,
    minority, variety).
    """
    want_order = needs & NEED_ORDER != 0
    want_runs = needs & NEED_RUNS != 0
    # an integer no pixel equals when nodata is NaN or not a value of the type
    skip = NO_VALUE
    if base <= nodata < base + counts.shape[0] - WALK_STEP and nodata == np.floor(nodata):
        skip = np.int64(nodata)
    first = start
    while first < stop and np.int64(values[band, first]) == skip:
        first += 1
    if first == stop:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0
    # moments without branches, relative to the first valid value (exact int64 sums)
    reference = np.int64(values[band, first])
    lo = hi = reference
    n = 0
    shifted_sum = 0
    shifted_squares = 0
    for i in range(first, stop):
        v = np.int64(values[band, i])
        ok = v != skip
        lo = min(lo, v) if ok else lo
        hi = max(hi, v) if ok else hi
        d = v - reference if ok else 0
        n += ok
        shifted_sum += d
        shifted_squares += d * d
    total = float(reference * n + shifted_sum)
    # n * squares - sum ** 2 is exact in int64 (squares < n << 32, hence below 2 ** 62
    # for up to 2 ** 15 pixels)
    if n <= 1 << 15 or shifted_squares <= VARIANCE_EXACT_LIMIT // n:
        variance = float(n * shifted_squares - shifted_sum * shifted_sum) / (float(n) * n)
    else:
        mean = total / n
        variance = 0.0
        for i in range(first, stop):
            v = np.int64(values[band, i])
            if v != skip:
                d = float(v) - mean
                variance += d * d
        variance /= n
    if not (want_order or want_runs):
        return n, float(lo), float(hi), total, variance, 0.0, 0.0, 0
    lo -= base
    hi -= base
    mode_x = count_values(values, band, first, stop, skip, base, counts, needs & NEED_MODE != 0)
    minority_x = lo
    if needs & NEED_MINORITY:  # the smallest count << KEY_BITS | value
        minority_key = np.iinfo(np.int64).max
        for i in range(first, stop):
            x = np.int64(values[band, i]) - base
            if x + base != skip:
                minority_key = min(minority_key, (np.int64(counts[x]) << KEY_BITS) | x)
        minority_x = minority_key & KEY_MASK
    if want_order:
        rank_plan(n, ranks)
        _, _, _, wanted, order, wanted_value, _ = ranks
        if hi - lo <= 16 * n + 256:
            walk_ranks(counts, lo, base, wanted, order, wanted_value)
        else:  # few values spread wide: sorting beats walking the counts
            copy_valid(values, band, start, stop, True, nodata, scratch)
            scratch[:n].sort()
            for i in range(wanted.shape[0]):
                wanted_value[i] = float(scratch[wanted[i]])
    # the counts are cleared; the variety is the number of values counted
    variety = 0
    if hi - lo < 16 * n:
        if needs & NEED_VARIETY:
            variety = np.count_nonzero(counts[lo:hi + 1])
        counts[lo:hi + 1] = 0
    else:  # a value's count is cleared at its first pixel
        for i in range(first, stop):
            x = np.int64(values[band, i]) - base
            if x + base != skip:
                variety += counts[x] != 0
                counts[x] = 0
    return (n, float(lo + base), float(hi + base), total, variance, float(mode_x + base),
            float(minority_x + base), variety)


@njit(cache=True, nogil=True, inline='always')
def count_values(values, band, first, stop, skip, base, counts, want_mode):
    """Count the values of ``values[band, first:stop]`` but ``skip`` in ``counts`` (indexed
    by value - ``base``); returns the offset of the mode (ties to the smallest), or 0 when
    not ``want_mode``: tracking it is a loop of its own, as work in the loop costs."""
    if not want_mode:
        for i in range(first, stop):
            v = np.int64(values[band, i])
            if v != skip:
                counts[v - base] += 1
        return 0
    # (count, value) pairs ranked by one integer: the mode has the largest of
    # count << KEY_BITS | (KEY_MASK - value), ties going to the smaller value
    mode_key = 0
    for i in range(first, stop):
        v = np.int64(values[band, i])
        if v != skip:
            x = v - base
            c = counts[x] + 1
            counts[x] = c
            mode_key = max(mode_key, (c << KEY_BITS) | (KEY_MASK - x))
    return KEY_MASK - (mode_key & KEY_MASK)


@njit(cache=True, nogil=True, inline='always')
def walk_ranks(counts, lo, base, wanted, order, wanted_value):
    """The values at ranks ``wanted`` (visited in ``order``) of counted values
    (value = offset + ``base``): ``WALK_STEP`` counts at a time up to the block
    holding the rank, then its place in the block without branches."""
    x = lo
    seen = 0  # values below x
    previous = -1
    for w in range(wanted.shape[0]):
        rank = wanted[order[w]]
        if rank == previous:  # numpy's inverted_cdf: lower and upper ranks are equal
            wanted_value[order[w]] = wanted_value[order[w - 1]]
            continue
        previous = rank
        while True:
            block = 0
            for j in range(WALK_STEP):
                block += counts[x + j]
            if seen + block > rank:
                break
            seen += block
            x += WALK_STEP
        # the rank's offset in the block: the values whose running count stays <= rank
        below = seen
        offset = 0
        for j in range(WALK_STEP):
            below += counts[x + j]
            offset += below <= rank
        wanted_value[order[w]] = float(x + offset + base)


@njit(cache=True, nogil=True, inline='always')
def general_band(values, band, start, stop, nodata, needs, is_int, ranks, scratch, counts,
                 selection):
    """Statistics of the valid pixels of any band: order statistics from a
    counting pass when integer values span little more than their count, else
    from the buckets of :mod:`.value_order` (values at ranks by selecting only the
    buckets that hold them; every value in order when mode, minority or variety
    are asked: ``selection`` holds its work arrays). Returns (valid
    pixels, min, max, sum, variance, mode, minority, variety, the counts buffer,
    grown if needed)."""
    n = 0
    lo = np.inf
    hi = -np.inf
    total = 0.0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        fv = float(v)
        lo = min(lo, fv)
        hi = max(hi, fv)
        total += fv
        n += 1
    if n == 0:
        return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, counts
    mean = total / n
    squares = -1.0
    mode = minority = 0.0
    variety = 0
    if needs & (NEED_ORDER | NEED_RUNS):
        rank_plan(n, ranks)
        _, _, _, wanted, order, wanted_value, _ = ranks
        span = int(hi - lo) if is_int else -1
        if is_int and span < 4 * n + COUNTING_SLACK:
            copy_valid(values, band, start, stop, True, nodata, scratch)
            if counts.shape[0] < span + 1:
                counts = np.zeros(span + 1, np.int64)
            low = np.int64(lo)
            for i in range(n):
                counts[np.int64(scratch[i]) - low] += 1
            squares, mode, minority, variety = scan_counts(
                counts, span, lo, mean, needs & NEED_MOMENTS != 0, needs & NEED_RUNS != 0,
                wanted, order, wanted_value)
        elif needs & NEED_RUNS:
            buckets, compact, bucket_ids = selection
            squares = bucket_sort(values, band, start, stop, nodata, n, lo, hi, mean,
                                  needs & NEED_MOMENTS != 0, scratch, buckets, compact,
                                  bucket_ids)
            for i in range(wanted.shape[0]):
                wanted_value[i] = float(scratch[wanted[i]])
            mode, minority, variety = scan_runs(scratch, n)
        else:
            buckets, compact, bucket_ids = selection
            squares = select_ranks(values, band, start, stop, nodata, n, lo, hi, mean,
                                   needs & NEED_MOMENTS != 0, wanted, order, wanted_value,
                                   scratch, buckets, compact, bucket_ids)
    if squares < 0.0:
        squares = 0.0
        if needs & NEED_MOMENTS:
            for i in range(start, stop):
                v = values[band, i]
                if v != v or v == nodata:
                    continue
                d = float(v) - mean
                squares += d * d
    return n, lo, hi, total, squares / n, mode, minority, variety, counts


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
def argsort_small(keys, visit, order):
    """Insertion argsort of a few keys into ``order`` (no allocation), taking them in
    the order ``visit`` (fastest when that is nearly sorted)."""
    for k in range(keys.shape[0]):
        i = visit[k]
        j = k
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
    """Run :func:`zone_statistics` for one plan in background threads, while the
    caller goes on collecting segments (the kernel releases the GIL; zones are
    disjoint, so their results rows never clash). Big batches are split in
    halves so both cores can take them. :meth:`wait` returns when every batch
    handed to :meth:`add` is done (and raises what a batch raised)."""

    #: Batches with fewer pixels than this are not worth splitting.
    SPLIT_PIXELS = 1 << 16
    #: Jobs in flight before :meth:`add` waits for the oldest.
    MAX_PENDING = 8

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
        #: class shares (``frac``) of the zones computed
        self.class_shares = ClassShares(plan)
        self._pending = []
        self._pool = None
        if threads > 0:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=threads,
                                            thread_name_prefix="tessera-stats")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stop the threads (after the batches in flight)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._pending = []

    def _run(self, ids, starts, lengths, values):
        pairs = zone_statistics(ids, starts, lengths, values, self.nodata, self.has_nodata,
                                self.is_int, self.table, self.quantiles, self.linear,
                                self.needs, self.results, self.missing)
        self.class_shares.add(pairs)

    def add(self, ids, starts, lengths, values):
        """Compute the statistics of zones ``ids`` (pixels ``values[:, start:start+length]``);
        ``values`` must stay unchanged until :meth:`wait`."""
        if self._pool is None:
            self._run(ids, starts, lengths, values)
            return
        order = np.argsort(starts, kind="stable")  # arena order: reads the prefetcher follows
        ids, starts, lengths = ids[order], starts[order], lengths[order]
        parts = [slice(0, len(ids))]
        if len(ids) > 1 and lengths.sum() >= self.SPLIT_PIXELS:
            half = int(np.searchsorted(np.cumsum(lengths), lengths.sum() // 2)) + 1
            half = min(max(half, 1), len(ids) - 1)
            parts = [slice(0, half), slice(half, len(ids))]
        for part in parts:
            self._pending.append(self._pool.submit(self._run, ids[part], starts[part],
                                                   lengths[part], values))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.pop(0).result()

    def wait(self):
        """Return once every batch added so far is done."""
        while self._pending:
            self._pending.pop(0).result()
