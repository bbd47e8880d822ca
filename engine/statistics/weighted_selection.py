"""exactextract's weighted quantiles of a zone without putting every value in order
(numba; used by :mod:`.weighted_kernels` when a zone needs no mode, minority, variety
or class shares).

The quantile walks the zone's distinct values in ascending order with the running sum
of their summed weights (``s_i = i·w_i + (n − 1)·Σ_{j<i} w_j``, see
:func:`.weighted_kernels.weighted_quantiles`), added one by one in that order: the
same bits need the same additions. Buckets of values (:mod:`.value_order`) give them
without sorting most of the zone:

- one pass counts each bucket's values and adds up their weights; a second places the
  values in their buckets; each bucket's distinct values are counted by comparisons
  (sorted and grouped when it holds many). In large zones buckets are often narrower
  than the values' steps: a bucket holding one distinct value is not placed value by
  value, its value and summed weight are all the walk needs;
- the running sum then crosses the buckets in order. Adding a bucket's weights one by
  one in order of value gives the same bits as adding their sum when no addition
  rounds. Weights are float32 (or float64) numbers: every weight of at least
  2^(u + fraction bits) is a multiple of 2^u, and sums of multiples of 2^u stay exact
  below 2^(53 + u). With u set by the zone's total weight, a bucket adds exactly
  unless it holds a smaller weight (a sliver pixel's) or the running sum has bits
  below 2^u (after such a sliver, checked bucket by bucket); those few buckets are
  sorted and added one by one;
- the bucket where ``s`` passes a quantile's target is found from the running sums
  between buckets; only it and the bucket before it are sorted and walked.

The values are those of the full walk, to the bit.

numba caches kernels by their own source files: after editing this module, touch
``weighted_kernels.py``.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from .value_order import (
    COUNTING_LIMIT,
    bucket_of,
    bucket_scale,
    group_pairs,
    place_buckets,
    place_pairs,
    sort_pairs,
)

#: Skipping a bucket needs its largest ``s`` below the target by more than rounding;
#: a sum computed in another order is within this factor of the exact one.
ROUNDING_MARGIN = 1.0 + 1e-9
FRACTION_MASK = (np.int64(1) << 52) - 1
SMALLEST_NORMAL = np.finfo(np.float64).tiny
#: Buckets of at most this many values count their distinct values without branches.
FEW_VALUES = 32
#: Zones of at least this many values look for buckets of one distinct value (repeated
#: values, narrower buckets than the values' steps): those are not placed value by value.
TIED_ZONE = 1 << 17

#: The work arrays of :func:`weighted_quantiles_by_buckets` (:func:`selection_work`),
#: per bucket unless said: where it ends (``ends``, a :func:`.value_order.bucket_table`,
#: left zeroed), its weight (``bucket_w``), the running sum entering it (``entering``),
#: its distinct values (``distinct``), whether it is grouped (``grouped``) or holds a
#: sliver weight (``fine``), more than one distinct value (``several``) and its first
#: value (``first_key``); per value: the placed values and weights (``placed_keys``,
#: ``placed_w``) and buckets (``bucket_ids``); ``cell`` and ``cell_bits`` one float64
#: seen as its bits; ``seen`` room for the values counted one by one.
SelectionWork = namedtuple("SelectionWork", [
    "ends", "bucket_w", "entering", "distinct", "grouped", "fine", "placed_keys",
    "placed_w", "bucket_ids", "cell", "cell_bits", "seen", "several", "first_key"])


@njit(cache=True, nogil=True, inline="always")
def binary_exponent(x, cell, cell_bits):
    """floor(log2(x)) of a float64 ``x`` > 0 (-1023 for subnormal numbers), read from
    its bits through ``cell`` (a float64 array of one) and ``cell_bits`` (its int64
    view): no libm call."""
    cell[0] = x
    return ((cell_bits[0] >> 52) & 0x7FF) - 1023


@njit(cache=True, nogil=True, inline="always")
def lowest_bit_exponent(x, cell, cell_bits):
    """log2 of the value of the lowest set bit of a normal float64 ``x`` > 0."""
    cell[0] = x
    bits = cell_bits[0]
    digits = (bits & FRACTION_MASK) | (np.int64(1) << 52)
    return binary_exponent(float(digits & -digits), cell, cell_bits) \
        + ((bits >> 52) & 0x7FF) - 1075


@njit(cache=True, nogil=True, inline="always")
def power_of_two(k, cell, cell_bits):
    """2^k as a float64 (normal range)."""
    cell_bits[0] = np.int64(min(max(k + 1023, 1), 2046)) << 52
    return cell[0]


@njit(cache=True, nogil=True)
def weighted_quantiles_by_buckets(keys, weights, n, lo, hi, sum_w, quantiles, by_quantile,
                                  count, out, mantissa_bits, work):
    """``out[j]`` = exactextract's weighted quantile ``quantiles[j]`` (for ``j < count``,
    visited in ascending order ``by_quantile``) of the ``n`` values ``keys`` (minimum
    ``lo``, maximum ``hi``, no NaN) with ``weights`` (> 0, numbers of ``mantissa_bits``
    fraction bits: 23 for float32; ``sum_w`` their sum in any order). ``work`` is
    :func:`selection_work`'s. Returns False, changing nothing, when buckets do not
    apply (few values, all equal, an infinite value)."""
    buckets, scale = bucket_scale(n, lo, hi)
    if buckets == 0:
        return False
    ends, bucket_w, entering, distinct = work.ends, work.bucket_w, work.entering, work.distinct
    grouped, fine, placed_keys, placed_w = work.grouped, work.fine, work.placed_keys, \
        work.placed_w
    bucket_ids, cell, cell_bits, seen = work.bucket_ids, work.cell, work.cell_bits, work.seen
    # sums of multiples of 2^unit up to the zone's total (with room for rounding) are
    # exact; weights of at least ``coarse`` are such multiples
    unit = binary_exponent(sum_w * ROUNDING_MARGIN, cell, cell_bits) - 52
    coarse = power_of_two(unit + mantissa_bits, cell, cell_bits)
    last = buckets - 1
    tied = False
    if n >= TIED_ZONE:  # large zones: values often repeat, buckets of one value are common
        tied = count_with_ties(keys, weights, n, lo, scale, last, coarse, work) <= n // 2
        if tied:
            place_tied(keys, weights, n, buckets, work)
        else:
            work.several[:buckets] = False
    else:
        for i in range(n):
            b = bucket_of(keys[i], lo, scale, last)
            bucket_ids[i] = b
            ends[b] += 1
            w = weights[i]
            bucket_w[b] += w
            if w < coarse:  # rare: a sliver
                fine[b] = True
    if not tied:
        place_buckets(ends, buckets)
        place_pairs(keys, weights, n, bucket_ids, ends, placed_keys, placed_w)
    # ends[b] is now where bucket b ends; the running sum of the distinct values'
    # weights entering every bucket, and the distinct values of every bucket
    n_distinct = 0
    total = 0.0
    total_unit = unit  # the running sum is a multiple of 2^total_unit
    begin = 0
    for b in range(buckets):
        end = ends[b]
        entering[b] = total
        if end == begin:
            continue
        if fine[b]:
            exact = False
        elif total_unit >= unit:
            exact = True
        else:  # bits below 2^unit left by a sliver: exact while below 2^(53 + total_unit)
            exact = binary_exponent((total + bucket_w[b]) * ROUNDING_MARGIN, cell,
                                    cell_bits) < 53 + total_unit
        if grouped[b]:  # one value (place_tied): one addition
            distinct[b] = 1
            total += placed_w[begin]
        elif (d := count_distinct(placed_keys, begin, end, seen) if exact else -1) < 0:
            # sort and group it now
            distinct[b] = sort_and_group(placed_keys, placed_w, begin, end)
            grouped[b] = True
            for i in range(begin, begin + distinct[b]):
                total += placed_w[i]
        else:
            distinct[b] = d
            total += bucket_w[b]
        if exact:  # a multiple of 2^unit added
            total_unit = min(total_unit, unit)
        else:
            total_unit = lowest_bit_exponent(total, cell, cell_bits) if total > SMALLEST_NORMAL \
                else -1100
        n_distinct += distinct[b]
        begin = end
    scaled = total * (n_distinct - 1.0)
    b = 0  # the search: every s of the buckets before b is at most the target
    index_before = 0  # the distinct values before b
    for k in range(by_quantile.shape[0]):
        j = by_quantile[k]
        if j >= count:
            continue
        target = quantiles[j] * scaled
        while b < last and (n_distinct - 1.0) * (entering[b + 1]) * ROUNDING_MARGIN <= target:
            index_before += distinct[b]
            b += 1
        out[j] = _walk(placed_keys, placed_w, ends, entering, distinct, grouped, b,
                       index_before, n_distinct, target, last)
    # leave the tables zeroed
    ends[:buckets] = 0
    bucket_w[:buckets] = 0.0
    distinct[:buckets] = 0
    grouped[:buckets] = False
    fine[:buckets] = False
    return True


@njit(cache=True, nogil=True)
def count_with_ties(keys, weights, n, lo, scale, last, coarse, work):
    """The counting pass of :func:`weighted_quantiles_by_buckets` that also tells the
    buckets holding more than one distinct value (``work.several``; ``work.first_key``
    keeps each bucket's first value). Returns how many values those buckets hold."""
    ends, bucket_w, fine, bucket_ids = work.ends, work.bucket_w, work.fine, work.bucket_ids
    several, first_key = work.several, work.first_key
    for i in range(n):
        x = keys[i]
        b = bucket_of(x, lo, scale, last)
        bucket_ids[i] = b
        c = ends[b]
        ends[b] = c + 1
        w = weights[i]
        bucket_w[b] += w
        if c == 0:
            first_key[b] = x
        elif first_key[b] != x:
            several[b] = True
        if w < coarse:  # rare: a sliver
            fine[b] = True
    in_several = 0
    for b in range(last + 1):
        if several[b]:
            in_several += ends[b]
    return in_several


@njit(cache=True, nogil=True)
def place_tied(keys, weights, n, buckets, work):
    """Place a zone counted by :func:`count_with_ties`: a bucket of one distinct value
    becomes that value (its first occurrence, the one a stable sort keeps) with the
    bucket's weight (added in pixel order, as grouping adds them), already grouped;
    only the values of the other buckets are placed one by one."""
    ends, bucket_w, grouped, bucket_ids = work.ends, work.bucket_w, work.grouped, \
        work.bucket_ids
    placed_keys, placed_w = work.placed_keys, work.placed_w
    several, first_key = work.several, work.first_key
    total = 0
    for b in range(buckets):
        c = ends[b]
        ends[b] = total
        if c > 0 and not several[b]:
            placed_keys[total] = first_key[b]
            placed_w[total] = bucket_w[b]
            grouped[b] = True
            c = 1
        total += c
    for i in range(n):
        b = bucket_ids[i]
        if several[b]:
            placed_keys[ends[b]] = keys[i]
            placed_w[ends[b]] = weights[i]
            ends[b] += 1
    for b in range(buckets):
        if grouped[b]:
            ends[b] += 1
        several[b] = False


@njit(cache=True, nogil=True, inline="always")
def sort_and_group(keys, weights, begin, end):
    """Sort a bucket's pairs ``keys[begin:end]`` and group its equal values at its start
    (their weights added in pixel order); returns how many distinct values it holds."""
    sort_pairs(keys, weights, begin, end)
    return group_pairs(keys, weights, begin, end, begin, 0.0)[0] - begin


@njit(cache=True, nogil=True, inline="always")
def count_distinct(keys, begin, end, seen):
    """How many distinct values ``keys[begin:end]`` holds (-1: more than
    COUNTING_LIMIT), by comparisons: each value with those before it in a few values
    (without branches), else with the distinct values seen so far (``seen``)."""
    if end - begin <= FEW_VALUES:
        d = 0
        for i in range(begin, end):
            x = keys[i]
            repeated = False
            for j in range(begin, i):
                repeated |= keys[j] == x
            d += not repeated
        return d
    d = 0
    for i in range(begin, end):
        x = keys[i]
        j = 0
        while j < d and seen[j] != x:
            j += 1
        if j == d:
            if d == COUNTING_LIMIT:
                return -1
            seen[d] = x
            d += 1
    return d


@njit(cache=True, nogil=True)
def _walk(keys, weights, ends, entering, distinct, grouped, b, index_before, n_distinct,
          target, last):
    """The quantile at ``target``: the walk of :func:`.weighted_kernels.weighted_quantiles`
    over the distinct values, from the last bucket holding values before ``b`` (its
    every ``s`` is at most the target, so the value and ``s`` before the first ``s``
    above the target are known) on, sorting and grouping buckets as it reaches them."""
    first = b - 1
    while first >= 0 and distinct[first] == 0:
        first -= 1
    if first < 0:
        first = b
    index = index_before  # the distinct values before bucket ``first``
    for c in range(first, b):
        index -= distinct[c]
    cumulative = entering[first]
    previous_value = previous_s = 0.0
    for c in range(first, last + 1):
        begin = ends[c - 1] if c > 0 else 0
        if ends[c] == begin:
            continue
        if not grouped[c]:
            sort_and_group(keys, weights, begin, ends[c])
            grouped[c] = True
        for i in range(begin, begin + distinct[c]):
            value = keys[i]
            s = index * weights[i] + (n_distinct - 1.0) * cumulative
            if index >= 1 and s > target:
                return previous_value + (target - previous_s) * (value - previous_value) / (
                    s - previous_s)
            previous_value = value
            previous_s = s
            cumulative += weights[i]
            index += 1
    return previous_value


@njit(cache=True, nogil=True)
def selection_work(table, keys, weights, bucket_ids):
    """The :data:`SelectionWork` of :func:`weighted_quantiles_by_buckets`: ``table`` a
    :func:`.value_order.bucket_table` (the bucket ends), ``keys`` and ``weights``
    (float64) and ``bucket_ids`` (int32) holding a zone's values."""
    size = table.shape[0]
    cell = np.zeros(1, np.float64)
    return SelectionWork(table, np.zeros(size, np.float64), np.zeros(size, np.float64),
                         np.zeros(size, np.int32), np.zeros(size, np.bool_),
                         np.zeros(size, np.bool_), keys, weights, bucket_ids, cell,
                         cell.view(np.int64), np.empty(COUNTING_LIMIT, np.float64),
                         np.zeros(size, np.bool_), np.empty(size, np.float64))
