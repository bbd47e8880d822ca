"""Values at ranks, and sorted values, of a zone without a comparison sort of all of
them (numba; used by :mod:`.kernels` and :mod:`.weighted_kernels`).

A zone's valid values are spread over buckets of equal width between its minimum and
maximum (``bucket = (v - min) * buckets / (max - min)``, a mapping that never puts a
larger value in a lower bucket, and always puts equal values, -0.0 and 0.0 included, in
one bucket). One counting pass tells which bucket holds each wanted rank:

- :func:`select_ranks` copies only the values of those few buckets and sorts them
  (a median costs two passes over the zone's values and a sort of a bucket or two);
- :func:`bucket_sort` and :func:`distinct_sorted` place every value in its bucket
  and sort the buckets by insertion (mode, minority, variety and weighted quantiles
  need every value in order; the weighted kernel's distinct values are grouped as
  each bucket is sorted).

The values found are the zone's own values at the same ranks as a full sort gives,
so every statistic stays the same to the bit. Zones of few values, and spans buckets
cannot split (equal values, an infinite value or span), are sorted as before; a
bucket holding many values (a skewed zone) is sorted whole.

numba caches the kernels by their own source files: after editing this module, touch
``kernels.py``, ``weighted_kernels.py`` and ``weighted_selection.py``.
"""

import numpy as np
from numba import njit

#: Zones with at most this many valid values are sorted: buckets do not pay below it.
SMALL_ZONE = 48
#: Values per bucket on average.
BUCKET_LOAD = 4
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
    return np.zeros(min(max(longest // BUCKET_LOAD, 2), MAX_BUCKETS) + 1, np.int32)


@njit(cache=True, nogil=True, inline="always")
def bucket_scale(n, lo, hi):
    """(buckets, scale) for ``n`` values in [lo, hi]; buckets is 0 when buckets do not
    apply (few values, equal values, an infinite value or span)."""
    if n <= SMALL_ZONE:
        return 0, 0.0
    span = hi - lo
    if not (span > 0.0 and span < np.inf):
        return 0, 0.0
    buckets = min(n // BUCKET_LOAD, MAX_BUCKETS)
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
def copy_valid_values(values, band, start, stop, nodata, out):
    """Copy the valid values (not NaN, not ``nodata``) of ``values[band, start:stop]`` to
    ``out``; returns their count."""
    n = 0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        out[n] = v
        n += 1
    return n


@njit(cache=True, nogil=True)
def count_buckets(values, band, start, stop, nodata, lo, scale, last, counts):
    """Count the valid values of ``values[band, start:stop]`` per bucket."""
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        counts[bucket_of(v, lo, scale, last)] += 1


@njit(cache=True, nogil=True)
def select_ranks(values, band, start, stop, nodata, n, lo, hi, wanted, order, wanted_value,
                 scratch, counts, targets, compact, bucket_ids):
    """``wanted_value[i]`` = the value of rank ``wanted[i]`` (0-based, ascending) among the
    ``n`` valid values of ``values[band, start:stop]``, whose minimum and maximum are
    ``lo`` and ``hi``; ``order`` visits ``wanted`` in ascending order. ``scratch`` holds
    at least ``n + 1`` values, ``counts`` is a :func:`bucket_table`, ``targets`` an int64
    array (4, len(wanted)), ``compact`` (values) and ``bucket_ids`` (int32) hold ``n``."""
    buckets, scale = bucket_scale(n, lo, hi)
    n_wanted = wanted.shape[0]
    if buckets == 0:
        copy_valid_values(values, band, start, stop, nodata, scratch)
        scratch[:n].sort()
        for i in range(n_wanted):
            wanted_value[i] = np.float64(scratch[wanted[i]])
        return
    last = buckets - 1
    # count, keeping the valid values and their buckets side by side
    k = 0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        b = bucket_of(v, lo, scale, last)
        counts[b] += 1
        compact[k] = v
        bucket_ids[k] = b
        k += 1
    # the buckets holding wanted ranks (targets[0]: bucket, 1: its first rank, 2: its
    # place in scratch, 3: next free place); counts[b] becomes target + 1, others 0
    n_targets = 0
    seen = 0
    w = 0
    rank = wanted[order[0]]
    placed = 0
    b = 0
    while b < buckets:
        c = counts[b]
        counts[b] = 0
        if rank < seen + c:
            targets[0, n_targets] = b
            targets[1, n_targets] = seen
            targets[2, n_targets] = placed
            targets[3, n_targets] = placed
            placed += c
            n_targets += 1
            counts[b] = n_targets
            while w < n_wanted and wanted[order[w]] < seen + c:
                w += 1
            if w == n_wanted:
                break
            rank = wanted[order[w]]
        seen += c
        b += 1
    counts[b + 1:buckets] = 0
    # copy the values of those buckets, bucket by bucket
    if placed * 8 > n and n_targets <= 4:
        # many values to copy (small zones): one pass per bucket without branches
        # (a value is written at the next free place, which advances when it belongs)
        for t in range(n_targets):
            target = targets[0, t]
            m = targets[2, t]
            for i in range(n):
                scratch[m] = compact[i]
                m += bucket_ids[i] == target
            targets[3, t] = m
    else:  # few values to copy: the branch is predictable
        for i in range(n):
            t = counts[bucket_ids[i]]
            if t:
                scratch[targets[3, t - 1]] = compact[i]
                targets[3, t - 1] += 1
    for t in range(n_targets):
        counts[targets[0, t]] = 0
        if targets[3, t] - targets[2, t] > COUNTING_LIMIT:
            sort_range(scratch, targets[2, t], targets[3, t])
    t = 0
    previous = -1
    for w in range(n_wanted):
        rank = wanted[order[w]]
        if rank == previous:  # numpy's inverted_cdf: lower and upper ranks are equal
            wanted_value[order[w]] = wanted_value[order[w - 1]]
            continue
        previous = rank
        while rank >= targets[1, t] + targets[3, t] - targets[2, t]:
            t += 1
        first, end = targets[2, t], targets[3, t]
        if end - first > COUNTING_LIMIT:  # sorted above
            wanted_value[order[w]] = np.float64(scratch[first + rank - targets[1, t]])
        else:
            wanted_value[order[w]] = np.float64(
                value_at_rank(scratch, first, end, rank - targets[1, t]))


@njit(cache=True, nogil=True)
def bucket_sort(values, band, start, stop, nodata, n, lo, hi, scratch, counts, compact,
                bucket_ids):
    """``scratch[:n]`` = the ``n`` valid values of ``values[band, start:stop]`` (minimum
    ``lo``, maximum ``hi``) in ascending order; ``counts`` is a :func:`bucket_table`,
    ``compact`` (values) and ``bucket_ids`` (int32) hold ``n``."""
    buckets, scale = bucket_scale(n, lo, hi)
    if buckets == 0:
        copy_valid_values(values, band, start, stop, nodata, scratch)
        scratch[:n].sort()
        return
    last = buckets - 1
    k = 0
    for i in range(start, stop):
        v = values[band, i]
        if v != v or v == nodata:
            continue
        b = bucket_of(v, lo, scale, last)
        counts[b] += 1
        compact[k] = v
        bucket_ids[k] = b
        k += 1
    place_buckets(counts, buckets)
    for i in range(n):
        b = bucket_ids[i]
        scratch[counts[b]] = compact[i]
        counts[b] += 1
    begin = 0
    for b in range(buckets):  # counts[b] is now where bucket b ends
        end = counts[b]
        counts[b] = 0
        if end - begin > 1:
            sort_range(scratch, begin, end)
        begin = end


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
    for i in range(n):
        b = bucket_ids[i]
        out_keys[counts[b]] = keys[i]
        out_weights[counts[b]] = weights[i]
        counts[b] += 1
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
