"""Median, percentiles, mode, minority and variety of zones large enough for the
bucket selection of ``engine/statistics/value_order.py`` (the statistics matrix's
zones are too small to reach it), against numpy and ``statistic_reference.py``:
the kernels are called directly on many generated zones, never compared with
themselves.

Zones: many ties (rounded values, few distinct values), NaN and nodata pixels,
single pixels, all-equal values, -0.0 beside 0.0, skewed values with a far outlier
(one bucket holds nearly all), infinite values, large zones, wide-span integers.
"""

import numpy as np
import pytest
from statistic_reference import reference
from zonal_cases import weighted_quantile

from tessera.engine.statistics.catalogue import SEGMENTS, WEIGHTED, StatPlan
from tessera.engine.statistics.kernels import zone_statistics
from tessera.engine.statistics.value_order import (
    DENSE_SELECTION,
    MAX_BUCKETS,
    SMALL_SELECTION,
    SMALL_ZONE,
)
from tessera.engine.statistics.weighted_kernels import weighted_zone_statistics

NODATA = -9999.0
PERCENTILES = (0, 2.5, 10, 33.3, 62.5, 90, 99, 100)
ORDER = ["median", "mode", "minority", "variety"]


def zone_values(kind, n, rng):
    """``n`` values of one kind of zone (float64; cast by the caller)."""
    if kind == "normal":
        return rng.normal(1500, 25, n)
    if kind == "rounded":  # the zonal benchmark's raster: many ties
        return np.round(rng.normal(1500, 25, n), 2)
    if kind == "few":
        return rng.integers(0, 5, n) * 0.5 - 1.0
    if kind == "equal":
        return np.full(n, 3.25)
    if kind == "zeros":  # -0.0 beside 0.0, and ties across the two
        return np.where(rng.random(n) < 0.5, -0.0, 0.0) + (rng.random(n) < 0.2)
    if kind == "skewed":  # a far outlier: one bucket holds nearly every value
        values = rng.exponential(1.0, n) ** 4
        values[rng.integers(n)] = 3e38
        return values
    if kind == "infinite":
        values = rng.normal(0, 1, n)
        values[rng.integers(n, size=2)] = (np.inf, -np.inf)
        return values
    if kind == "spread":  # integers spread wider than their count (no counting pass)
        return rng.integers(-2_000_000_000, 2_000_000_000, n).astype(np.float64)
    raise ValueError(kind)


KINDS = ["normal", "rounded", "few", "equal", "zeros", "skewed", "infinite"]


def zones(dtype, kinds, rng, sizes=(1, 2, 7, SMALL_SELECTION, SMALL_SELECTION + 1, 30,
                                    SMALL_ZONE, SMALL_ZONE + 1, 100, DENSE_SELECTION,
                                    DENSE_SELECTION + 40, 300, 4099)):
    """(values (1, pixels), starts, lengths, the valid values of each zone); about 8 % of
    the pixels invalid (NaN for floats, nodata)."""
    parts, valid = [], []
    for kind in kinds:
        for n in sizes:
            values = zone_values(kind, n, rng)
            invalid = rng.random(n) < 0.08
            if n > 2:
                values[invalid] = NODATA
                if np.dtype(dtype).kind == "f":
                    values[invalid & (rng.random(n) < 0.5)] = np.nan
            values = values.astype(dtype)
            parts.append(values)
            keep = ~np.isnan(values.astype(np.float64)) & (values != NODATA)
            valid.append(values[keep].astype(np.float64))
    lengths = np.array([len(p) for p in parts], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return np.concatenate(parts)[None, :], starts, lengths, valid


def run_plain(values, starts, lengths, statistics, percentiles, method):
    plan = StatPlan(statistics, [1], values.dtype, percentiles=percentiles,
                    percentile_method=method, where=SEGMENTS)
    ids = np.arange(len(starts), dtype=np.int64)
    results = np.full((len(plan.columns), len(ids)), np.nan)
    zone_statistics(ids, starts, lengths, values, np.array([NODATA]), np.array([True]),
                    values.dtype.kind in "iu", plan.kernel_table(),
                    np.array(plan.percentiles, np.float64) / 100, method == "linear",
                    plan.band_needs(), results, -1e300)
    return {c.name.removeprefix("b1_"): results[i] for i, c in enumerate(plan.columns)}


def run_weighted(values, weights, starts, lengths, statistics):
    plan = StatPlan(statistics, [1], values.dtype, percentiles=PERCENTILES, where=WEIGHTED)
    ids = np.arange(len(starts), dtype=np.int64)
    results = np.full((len(plan.columns), len(ids)), np.nan)
    weighted_zone_statistics(ids, starts, lengths, values, weights, np.array([NODATA]),
                             np.array([True]), plan.kernel_table(),
                             np.array(plan.percentiles, np.float64) / 100, plan.band_needs(),
                             results, -1e300)
    return {c.name.removeprefix("b1_"): results[i] for i, c in enumerate(plan.columns)}


def expected(valid, label, method):
    if not len(valid):
        return None
    return reference(valid, percentiles=PERCENTILES, method=method)[label]


@pytest.mark.parametrize("method", ["inverted_cdf", "linear"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ranks_equal_numpy_to_the_bit(dtype, method):
    """Percentiles and median alone (values at ranks selected from buckets) and with mode,
    minority and variety (every value in order): numpy's values, bit for bit; also in a
    batch of small zones only (its table of bucket counts sized for them)."""
    rng = np.random.default_rng(22)
    for sizes in (None, (SMALL_SELECTION + 1, 30, 100, DENSE_SELECTION + 8)):
        check_ranks(*zones(dtype, KINDS, rng, *([sizes] if sizes else [])), method)


def check_ranks(values, starts, lengths, valid, method):
    labels = ["median"] + [f"p{np.format_float_positional(p, trim='-')}" for p in PERCENTILES]
    for statistics in (["median"], ORDER):
        got = run_plain(values, starts, lengths, statistics, PERCENTILES, method)
        for label in labels + (statistics[1:]):
            for z, zone in enumerate(valid):
                want = expected(zone, label, method)
                if want is None:
                    assert got[label][z] == -1e300
                    continue
                if np.isnan(want):  # numpy interpolates between equal infinities to NaN
                    assert np.isnan(got[label][z]) or np.isinf(got[label][z])
                    continue
                # -0.0 and 0.0 are one value for every statistic (as numpy's sort)
                assert got[label][z] == want, (statistics, label, z, len(zone), got[label][z],
                                               want)
                if method == "inverted_cdf" and label != "variety":
                    assert got[label][z] in zone  # an actual pixel value


def test_spread_integers_and_a_large_zone():
    rng = np.random.default_rng(7)
    values, starts, lengths, valid = zones("int32", ["spread"], rng, sizes=(60, 1000, 20000))
    big, _, big_lengths, big_valid = zones("float32", ["rounded"], rng,
                                           sizes=(8 * MAX_BUCKETS,))
    for data, s, n, v in ((values, starts, lengths, valid), (big, _, big_lengths, big_valid)):
        for method in ("inverted_cdf", "linear"):
            got = run_plain(data, s, n, ["median"], (10, 90), method)
            got_all = run_plain(data, s, n, ORDER, (10, 90), method)
            for z, zone in enumerate(v):
                for p, label in ((50, "median"), (10, "p10"), (90, "p90")):
                    want = np.percentile(zone, p, method=method)
                    assert got[label][z] == want and got_all[label][z] == want
                ref = reference(zone)
                for label in ORDER[1:]:
                    assert got_all[label][z] == ref[label], (label, z)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_quantiles_mode_and_variety(dtype):
    """Coverage-weighted: the reference's weighted quantile (exactextract's), mode,
    minority (largest / smallest summed weight) and variety, with ties of values whose
    weights add up."""
    rng = np.random.default_rng(5)
    values, starts, lengths, valid = zones(dtype, KINDS, rng)
    weights = rng.random(values.shape[1]).astype(np.float32)
    weights[rng.random(values.shape[1]) < 0.5] = 1.0  # inner pixels: fully covered
    got = run_weighted(values, weights, starts, lengths, ORDER)
    labels = ["median"] + [f"p{np.format_float_positional(p, trim='-')}" for p in PERCENTILES]
    for z in range(len(starts)):
        zone = values[0, starts[z]:starts[z] + lengths[z]].astype(np.float64)
        w = weights[starts[z]:starts[z] + lengths[z]].astype(np.float64)
        keep = ~np.isnan(zone) & (zone != NODATA)
        if not keep.any():
            assert got["median"][z] == -1e300
            continue
        ref = reference(zone[keep], w[keep], percentiles=PERCENTILES)
        for label in labels:
            want = ref[label]
            if np.isinf(want) or np.isnan(want):  # interpolation with an infinite value
                assert np.isnan(got[label][z]) or got[label][z] == want, (label, z)
                continue
            # the reference sums all weights pairwise (np.sum), the kernel in order
            assert got[label][z] == pytest.approx(want, rel=1e-12, abs=1e-300), (label, z)
        assert got["variety"][z] == ref["variety"]
        assert got["mode"][z] == ref["mode"] and got["minority"][z] == ref["minority"], z


def in_order_weighted_quantile(values, weights, q):
    """exactextract's weighted quantile of a zone's values and weights: equal values
    grouped (np.bincount adds their weights in pixel order), then the definition summed
    in order of value (zonal_cases.weighted_quantile)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return weighted_quantile(distinct, np.bincount(inverse.ravel(), weights), q)


@pytest.mark.parametrize("weight_type", ["float32", "float64"])
@pytest.mark.parametrize("tiny_weights", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_quantiles_to_the_bit(dtype, tiny_weights, weight_type):
    """Weighted median and percentiles alone (selected from buckets when the zone's weight
    sums are exact) and with mode (every value in order): equal to the bit to the
    definition summed in order of value. ``tiny_weights`` puts a weight of 1e-30 in some
    zones, whose sums are then not exact (the in-order path); float64 weights of
    fractions are not exact either; float32 fractions and whole pixels are."""
    rng = np.random.default_rng(23)
    values, starts, lengths, _ = zones(dtype, KINDS, rng, sizes=(1, 2, 7, SMALL_ZONE + 1, 300,
                                                                 4099, 30000))
    weights = rng.random(values.shape[1]).astype(weight_type)
    weights[rng.random(values.shape[1]) < 0.7] = 1.0  # inner pixels: fully covered
    if tiny_weights:
        weights[starts[::2] + lengths[::2] // 2] = 1e-30
    labels = ["median"] + [f"p{np.format_float_positional(p, trim='-')}" for p in PERCENTILES]
    quantiles = [0.5] + [p / 100 for p in PERCENTILES]
    for statistics in (["median"], ["median", "mode"]):
        got = run_weighted(values, weights, starts, lengths, statistics)
        for z in range(len(starts)):
            zone = values[0, starts[z]:starts[z] + lengths[z]].astype(np.float64)
            w = weights[starts[z]:starts[z] + lengths[z]].astype(np.float64)
            keep = ~np.isnan(zone) & (zone != NODATA) & (w > 0)
            if not keep.any():
                continue
            for label, q in zip(labels, quantiles, strict=True):
                want = in_order_weighted_quantile(zone[keep], w[keep], q)
                if np.isnan(want):  # interpolation with an infinite value
                    assert np.isnan(got[label][z]), (label, z)
                    continue
                assert got[label][z] == want, (statistics, label, z, got[label][z], want)


def tables_left(work):
    """Which per-bucket tables of a selection's work are not zeroed."""
    return [part.any() for part in (work.ends, work.bucket_w, work.distinct, work.grouped,
                                    work.fine)]


def test_weighted_selection_applies_where_it_should():
    """The bucket selection answers for zones of many distinct values (and equals the
    definition, with weights whose sums round or not); it declines few values, equal
    values and infinite spans, and leaves its tables zeroed."""
    from tessera.engine.statistics.value_order import bucket_scale, bucket_table
    from tessera.engine.statistics.weighted_selection import (
        TIED_ZONE,
        count_with_ties,
        selection_work,
        weighted_quantiles_by_buckets,
    )

    rng = np.random.default_rng(4)
    n = 5000
    quantiles = np.array([0.1, 0.9, 0.5, 0.0, 1.0])
    by_quantile = np.argsort(quantiles, kind="mergesort")
    table = bucket_table(n)
    work = selection_work(table, np.empty(n), np.empty(n), np.empty(n, np.int32))
    for values in (np.round(rng.normal(1500, 25, n), 2), rng.integers(0, 5, n) * 0.5,
                   rng.exponential(1.0, n) ** 4):
        for sliver in (None, 1e-9, 1e-30, 1e-300):
            weights = rng.random(n).astype(np.float32).astype(np.float64)
            weights[rng.random(n) < 0.5] = 1.0
            if sliver:
                weights[rng.integers(n, size=5)] = sliver
            for mantissa_bits in (23, 52):  # float32 weights, or any
                out = np.full(len(quantiles), np.nan)
                assert weighted_quantiles_by_buckets(values, weights, n, values.min(),
                                                     values.max(), weights.sum(), quantiles,
                                                     by_quantile, len(quantiles), out,
                                                     mantissa_bits, work)
                for j, q in enumerate(quantiles):
                    assert out[j] == in_order_weighted_quantile(values, weights, q), (sliver, q)
                assert not any(tables_left(work))
    # large zones: buckets narrower than the values' steps hold one value each (placed
    # without going value by value), or values all distinct (placed one by one)
    large = TIED_ZONE + 7
    table = bucket_table(large)
    work = selection_work(table, np.empty(large), np.empty(large), np.empty(large, np.int32))
    for values, tied in ((np.round(rng.normal(1500, 25, large), 2), True),
                         (rng.normal(1500, 25, large), False)):
        weights = rng.random(large).astype(np.float32).astype(np.float64)
        weights[rng.random(large) < 0.8] = 1.0
        weights[rng.integers(large, size=3)] = 1e-9
        buckets, scale = bucket_scale(large, values.min(), values.max())
        fresh = selection_work(bucket_table(large), np.empty(large), np.empty(large),
                               np.empty(large, np.int32))
        in_several = count_with_ties(values, weights, large, values.min(), scale, buckets - 1,
                                     0.0, fresh)
        assert (in_several <= large // 2) == tied
        out = np.full(len(quantiles), np.nan)
        assert weighted_quantiles_by_buckets(values, weights, large, values.min(), values.max(),
                                             weights.sum(), quantiles, by_quantile,
                                             len(quantiles), out, 23, work)
        for j, q in enumerate(quantiles):
            assert out[j] == in_order_weighted_quantile(values, weights, q), (tied, q)
        assert not any(tables_left(work)) and not work.several.any()
    equal = np.full(n, 2.5)
    infinite = np.r_[rng.normal(0, 1, n - 1), np.inf]
    for values in (equal, infinite, np.arange(10.0)):
        out = np.full(len(quantiles), np.nan)
        assert not weighted_quantiles_by_buckets(values, np.ones(n), len(values), values.min(),
                                                 values.max(), float(len(values)), quantiles,
                                                 by_quantile, len(quantiles), out, 23, work)
        assert np.isnan(out).all()


def test_float_bits():
    """The exponents read from a float's bits equal numpy's frexp and the lowest set bit
    of the float's exact fraction."""
    from fractions import Fraction

    from tessera.engine.statistics.weighted_selection import (
        binary_exponent,
        lowest_bit_exponent,
        power_of_two,
    )

    cell = np.zeros(1)
    bits = (cell, cell.view(np.int64))
    rng = np.random.default_rng(9)
    numbers = np.r_[rng.random(200) * 10.0 ** rng.integers(-300, 300, 200), 1.0, 0.75, 3.0,
                    2.0 ** -1022, 2.0 ** 1023, np.float32(0.1), 5000.0 + 2.0 ** -40]
    for x in numbers:
        assert binary_exponent(x, *bits) == np.frexp(x)[1] - 1
        denominator = Fraction(float(x)).denominator  # x = a / 2^k, a odd (or x integer)
        numerator = Fraction(float(x)).numerator
        low = -(denominator.bit_length() - 1) if denominator > 1 else \
            (numerator & -numerator).bit_length() - 1
        assert lowest_bit_exponent(x, *bits) == low, x
    for k in (-1000, -52, 0, 7, 1000):
        assert power_of_two(k, *bits) == 2.0 ** k
