"""Values at ranks, and sorted values, of a zone without a comparison sort of all of
them (numba; used by :mod:`.kernels` and :mod:`.weighted_kernels`).

A zone's valid values are spread over buckets of equal width between its minimum and
maximum (``bucket = (v - min) * buckets / (max - min)``, a mapping that never puts a
larger value in a lower bucket, and always puts equal values, -0.0 and 0.0 included, in
one bucket). One counting pass tells which bucket holds each wanted rank:

- :func:`select_ranks` places every value in its bucket (a counting pass, then a
  placing pass over the values kept by it) and ranks only the values of the few
  buckets holding wanted ranks, by counting or, when many, by sorting them;
- :func:`bucket_sort` and :func:`distinct_sorted` place every value in its bucket
  and sort the buckets by insertion (mode, minority, variety and weighted quantiles
  need every value in order; the weighted kernel's distinct values are grouped as
  each bucket is sorted).

The values found are the zone's own values at the same ranks as a full sort gives,
so every statistic stays the same to the bit. The counting pass also adds up the
squared deviations from the mean (the variance's sum, in the same order as a pass of
its own): in small zones a pass less weighs as much as the selection. Zones of few
values, and spans buckets cannot split (equal values, an infinite value or span), are
sorted as before; a bucket holding many values (a skewed zone) is sorted whole.

numba caches the kernels by their own source files: after editing this module, touch
``kernels.py``, ``weighted_kernels.py`` and ``weighted_selection.py``.
"""

import numpy as np
from numba import njit

#: Zones with at most this many valid values are sorted: buckets do not pay below it.
SMALL_ZONE = 48
#: The same for :func:`select_ranks` (it looks at only a few buckets: they pay sooner).
SMALL_SELECTION = 16
#: Values per bucket on average.
BUCKET_LOAD = 4
#: :func:`select_ranks` on zones of at most this many values fills buckets half as much
#: (:data:`DENSE_LOAD`): ranking the few values of a wanted bucket is what costs there,
#: not the table of bucket counts, which stays small.
DENSE_SELECTION = 256
DENSE_LOAD = 2
#: Most buckets of a zone (a table of this many int32 counts stays in the L2 cache).
MAX_BUCKETS = 1 << 16
#: Buckets holding more values than this are sorted with numpy's sort, not by insertion.
INSERTION_LIMIT = 24
#: A wanted rank in a bucket of at most this many values is found by counting, for
#: each value, the values below it (no sort: comparisons without branches).
COUNTING_LIMIT = 32


@njit(cache=True, nogil=True)
def bucket_table(longest):
    """A zeroed table of bucket counts for zones of up to ``longest`` values (one spare
    slot); the functions below leave it zeroed."""
    dense = min(longest, DENSE_SELECTION) // DENSE_LOAD
    return np.zeros(min(max(longest // BUCKET_LOAD, dense, 2), MAX_BUCKETS) + 1, np.int32)


@njit(cache=True, nogil=True, inline="always")
def bucket_scale(n, lo, hi, small=SMALL_ZONE, load=BUCKET_LOAD):
    """(buckets, scale) for ``n`` values in [lo, hi], ``load`` values per bucket on
    average; buckets is 0 when buckets do not apply (at most ``small`` values, equal
    values, an infinite value or span)."""
    if n <= small:
        return 0, 0.0
    span = hi - lo
    if not (span > 0.0 and span < np.inf):
        return 0, 0.0
    buckets = min(n // load, MAX_BUCKETS)
    scale = buckets / span
    if not scale < np.inf:
        return 0, 0.0
    return buckets, scale


@njit(cache=True, nogil=True, inline="always")
def bucket_of(v, lo, scale, last):
    """The bucket of ``v`` (>= lo): non-decreasing in ``v``."""
    return min(np.int64((np.float64(v) - lo) * scale), last)


@njit(cache=True, nogil=True, inline="always")
def insertion_sort(a, start, stop):
    """Sort ``a[start:stop]`` in place (stable)."""
    for i in range(start + 1, stop):
        x = a[i]
        j = i - 1
        while j >= start and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x


@njit(cache=True, nogil=True, inline="always")
def sort_range(a, start, stop):
    """Sort ``a[start:stop]`` in place."""
    if stop - start <= INSERTION_LIMIT:
        insertion_sort(a, start, stop)
    else:
        a[start:stop].sort()


@njit(cache=True, nogil=True, inline="always")
def value_at_rank(a, start, stop, rank):
    """The value of rank ``rank`` (0-based) among ``a[start:stop]``, without sorting: the
    value with at most ``rank`` values below it and more than ``rank`` at or below it."""
    for i in range(start, stop):
        x = a[i]
        below = 0
        at = 0
        for j in range(start, stop):
            below += a[j] < x
            at += a[j] <= x
        if below <= rank < at:
            return x
    return a[start]  # not reached


@njit(cache=True, nogil=True)
def copy_valid_values(values, band, start, stop, nodata, out, mean, need_squares):
    """Copy the valid values (not NaN, not ``nodata``) of ``values[band, start:stop]`` to
    ``out``; returns their sum of squared deviations from ``mean`` if ``need_squares``,
    else -1.0 (see :func:`fill_buckets`)."""
    n = 0
    squares = 0.0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        out[n] = v
        n += 1
        if need_squares:
            d = np.float64(v) - mean
            squares += d * d
    return squares if need_squares else -1.0


@njit(cache=True, nogil=True, inline="always")
def fill_buckets(values, band, start, stop, nodata, n, lo, scale, buckets, counts, compact,
                 bucket_ids, mean, need_squares, scratch):
    """Place the ``n`` valid values of ``values[band, start:stop]`` in ``scratch``
    bucket after bucket (in their order within a bucket); ``counts[b]`` becomes where
    bucket ``b`` ends. One pass counts them per bucket, keeping each value (``compact``)
    and its bucket (``bucket_ids``) side by side; a second pass places them. Returns
    their sum of squared deviations from ``mean`` if ``need_squares`` (the variance's
    sum, added in the same order as a pass of its own would: its additions wait on each
    other, the counting does not, so it costs little there), else -1.0."""
    last = buckets - 1
    k = 0
    squares = 0.0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        b = bucket_of(v, lo, scale, last)
        counts[b] += 1
        compact[k] = v
        bucket_ids[k] = b
        k += 1
        if need_squares:
            d = np.float64(v) - mean
            squares += d * d
    place_buckets(counts, buckets)
    for i in range(n):
        b = bucket_ids[i]
        scratch[counts[b]] = compact[i]
        counts[b] += 1
    return squares if need_squares else -1.0


@njit(cache=True, nogil=True)
def select_ranks(values, band, start, stop, nodata, n, lo, hi, mean, need_squares, wanted,
                 order, wanted_value, scratch, counts, compact, bucket_ids):
    """``wanted_value[i]`` = the value of rank ``wanted[i]`` (0-based, ascending) among the
    ``n`` valid values of ``values[band, start:stop]``, whose minimum and maximum are
    ``lo`` and ``hi``; ``order`` visits ``wanted`` in ascending order. Every value is
    placed in its bucket (:func:`fill_buckets`), then only the buckets holding a wanted
    rank are looked at: ranked by counting (:func:`value_at_rank`), or sorted when they
    hold many values. Returns the sum of squared deviations from ``mean`` if
    ``need_squares``, else -1.0. ``scratch`` holds at least ``n + 1`` values,
    ``counts`` is a :func:`bucket_table`, ``compact`` (values) and ``bucket_ids``
    (int32) hold ``n``."""
    buckets, scale = bucket_scale(n, lo, hi, SMALL_SELECTION,
                                  DENSE_LOAD if n <= DENSE_SELECTION else BUCKET_LOAD)
    n_wanted = wanted.shape[0]
    if buckets == 0:
        squares = copy_valid_values(values, band, start, stop, nodata, scratch, mean,
                                    need_squares)
        scratch[:n].sort()
        for i in range(n_wanted):
            wanted_value[i] = np.float64(scratch[wanted[i]])
        return squares
    squares = fill_buckets(values, band, start, stop, nodata, n, lo, scale, buckets, counts,
                           compact, bucket_ids, mean, need_squares, scratch)
    # counts[b] is now where bucket b ends
    sorted_bucket = -1
    previous = -1
    for w in range(n_wanted):
        rank = wanted[order[w]]
        if rank == previous:  # numpy's inverted_cdf: lower and upper ranks are equal
            wanted_value[order[w]] = wanted_value[order[w - 1]]
            continue
        previous = rank
        b = 0  # the bucket holding the rank: the buckets ending at or before it
        for i in range(buckets):
            b += counts[i] <= rank
        first = counts[b - 1] if b > 0 else 0
        end = counts[b]
        if end - first > COUNTING_LIMIT:
            if b != sorted_bucket:
                sort_range(scratch, first, end)
                sorted_bucket = b
            wanted_value[order[w]] = np.float64(scratch[rank])
        else:
            wanted_value[order[w]] = np.float64(value_at_rank(scratch, first, end, rank - first))
    counts[:buckets] = 0
    return squares


@njit(cache=True, nogil=True)
def bucket_sort(values, band, start, stop, nodata, n, lo, hi, mean, need_squares, scratch, counts,
                compact, bucket_ids):
    """``scratch[:n]`` = the ``n`` valid values of ``values[band, start:stop]`` (minimum
    ``lo``, maximum ``hi``) in ascending order; returns the sum of squared deviations
    from ``mean`` if ``need_squares``, else -1.0. ``counts`` is a :func:`bucket_table`,
    ``compact`` (values) and ``bucket_ids`` (int32) hold ``n``."""
    buckets, scale = bucket_scale(n, lo, hi)
    if buckets == 0:
        squares = copy_valid_values(values, band, start, stop, nodata, scratch, mean,
                                    need_squares)
        scratch[:n].sort()
        return squares
    squares = fill_buckets(values, band, start, stop, nodata, n, lo, scale, buckets, counts,
                           compact, bucket_ids, mean, need_squares, scratch)
    begin = 0
    for b in range(buckets):  # counts[b] is now where bucket b ends
        end = counts[b]
        counts[b] = 0
        if end - begin > 1:
            sort_range(scratch, begin, end)
        begin = end
    return squares


@njit(cache=True, nogil=True, inline="always")
def place_buckets(counts, buckets):
    """Turn the counts of ``buckets`` into where each bucket starts (exclusive sums)."""
    total = 0
    for b in range(buckets):
        c = counts[b]
        counts[b] = total
        total += c


@njit(cache=True, nogil=True)
def distinct_sorted(keys, weights, n, lo, hi, out_keys, out_weights, counts, bucket_ids):
    """The distinct values of ``keys[:n]`` (minimum ``lo``, maximum ``hi``, no NaN) in
    ascending order into ``out_keys``, with the sum of their ``weights`` (added in the
    order of ``keys``) into ``out_weights``; ``counts`` is a :func:`bucket_table`.
    Returns (how many distinct values, the sum of their summed weights in ascending
    order of value). ``bucket_ids`` (int32) holds ``n``."""
    buckets, scale = bucket_scale(n, lo, hi)
    if buckets == 0:
        order = np.argsort(keys[:n], kind="mergesort")
        for i in range(n):
            out_keys[i] = keys[order[i]]
            out_weights[i] = weights[order[i]]
        n_distinct, total = group_pairs(out_keys, out_weights, 0, n, 0, 0.0)
        return n_distinct, total + out_weights[n_distinct - 1]
    last = buckets - 1
    for i in range(n):
        b = bucket_of(keys[i], lo, scale, last)
        bucket_ids[i] = b
        counts[b] += 1
    place_buckets(counts, buckets)
    place_pairs(keys, weights, n, bucket_ids, counts, out_keys, out_weights)
    # sort each bucket (stable) and group its equal values right away, in place
    n_distinct = 0
    total = 0.0
    begin = 0
    for b in range(buckets):
        end = counts[b]
        counts[b] = 0
        sort_pairs(out_keys, out_weights, begin, end)
        n_distinct, total = group_pairs(out_keys, out_weights, begin, end, n_distinct, total)
        begin = end
    return n_distinct, total + out_weights[n_distinct - 1]


@njit(cache=True, nogil=True, inline="always")
def group_pairs(keys, weights, begin, end, n_distinct, total):
    """Fold the sorted ``keys[begin:end]`` into the distinct values found so far
    (``keys[:n_distinct]``, in place: ``n_distinct <= begin``), adding up the weights of
    equal values; ``total`` adds each distinct value's summed weight once it is complete.
    Returns (n_distinct, total)."""
    for i in range(begin, end):
        v = keys[i]
        w = weights[i]
        if n_distinct > 0 and keys[n_distinct - 1] == v:
            weights[n_distinct - 1] += w
        else:
            if n_distinct > 0:
                total += weights[n_distinct - 1]
            keys[n_distinct] = v
            weights[n_distinct] = w
            n_distinct += 1
    return n_distinct, total


@njit(cache=True, nogil=True, inline="always")
def place_pairs(keys, weights, n, bucket_ids, ends, out_keys, out_weights):
    """Place ``keys[:n]`` and their ``weights`` in their buckets (``bucket_ids``) of
    ``out_keys`` and ``out_weights``, in their order within a bucket; ``ends[b]`` goes
    from where bucket ``b`` starts to where it ends."""
    for i in range(n):
        b = bucket_ids[i]
        out_keys[ends[b]] = keys[i]
        out_weights[ends[b]] = weights[i]
        ends[b] += 1


@njit(cache=True, nogil=True, inline="always")
def sort_pairs(keys, weights, begin, end):
    """Sort ``keys[begin:end]`` in place, stable, moving ``weights`` alike."""
    if end - begin > INSERTION_LIMIT:
        order = np.argsort(keys[begin:end], kind="mergesort") + begin
        sorted_keys = keys[order]
        sorted_weights = weights[order]
        keys[begin:end] = sorted_keys
        weights[begin:end] = sorted_weights
        return
    for i in range(begin + 1, end):
        x = keys[i]
        y = weights[i]
        j = i - 1
        while j >= begin and keys[j] > x:
            keys[j + 1] = keys[j]
            weights[j + 1] = weights[j]
            j -= 1
        keys[j + 1] = x
        weights[j + 1] = y
