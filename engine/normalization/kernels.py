"""numba kernels of relative radiometric normalization, one window at a time.

Statistics: :func:`accumulate_moments` (one image) and
:func:`accumulate_pair_moments` (co-located pixels valid in both images)
merge a window's exact count, mean and sum of squared deviations into
running values (Chan et al.'s pairwise update); :func:`accumulate_blocks`
adds a window's valid pixels to block sums and counts.

Corrections (:func:`linear_correction`, :func:`local_correction`) compute each
valid pixel's float64 result and store it straight into the output type as
:func:`store_output` stores an array of results: rounded (integer outputs),
clamped to the output type's range, moved off the nodata value; nodata where
the input had it.

A pixel is valid when it is not NaN and not the nodata value; a ``mask``
(uint8, 1 = use) limits the pixels that feed statistics when ``use_mask``.

Speed without changing a bit (issue 23): integers of at most 16 bits in and out take
kernels whose loops the compiler vectorizes (no branches, integer sums, which equal
the float sums of adding one value at a time while those stay below 2**53); float
sums keep their order (several bands' chains of additions interleaved, or a running
sum kept in a register). The gamma correction into such integers evaluates its
logarithms and power with numpy's SIMD functions and recomputes with the C library
every value whose rounding their last-bit differences could change
(:func:`local_correction`); float outputs keep the C library throughout.
"""

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _valid(value, nodata, has_nodata):
    return value == value and not (has_nodata and value == nodata)


@njit(cache=True, nogil=True)
def _merge(counts, means, m2, band, n, mean, q):
    total = counts[band] + n
    if counts[band] == 0:
        means[band] = mean
        m2[band] = q
    else:
        delta = mean - means[band]
        means[band] += delta * n / total
        m2[band] += q + delta * delta * counts[band] * n / total
    counts[band] = total


@njit(cache=True, nogil=True)
def accumulate_moments(tile, nodata, has_nodata, mask, use_mask, counts, means, m2):
    """Merge each band's valid pixels of ``tile`` (bands, rows, cols) into the moments.

    Four bands at a time (:func:`_moments_of_four`): each band's sums add the same
    values in the same order as band by band (the same bits), while the four chains
    of additions overlap in the processor."""
    for b0 in range(0, tile.shape[0], 4):
        _moments_of_four(tile, b0, nodata, has_nodata, mask, use_mask, counts, means, m2)


@njit(cache=True, nogil=True)
def _moments_of_four(tile, b0, nodata, has_nodata, mask, use_mask, counts, means, m2):
    """:func:`accumulate_moments` of bands ``b0`` to ``b0 + 3`` (those beyond the last
    band repeat it and are dropped): count and sum, then the squared deviations from
    the mean, each band in its own running sum."""
    bands, rows, cols = tile.shape
    b1, b2, b3 = min(b0 + 1, bands - 1), min(b0 + 2, bands - 1), min(b0 + 3, bands - 1)
    n0 = n1 = n2 = n3 = 0
    t0 = t1 = t2 = t3 = 0.0
    for r in range(rows):
        for c in range(cols):
            inside = not use_mask or mask[r, c]
            v0, v1, v2, v3 = tile[b0, r, c], tile[b1, r, c], tile[b2, r, c], tile[b3, r, c]
            k0 = inside and _valid(v0, nodata, has_nodata)
            k1 = inside and _valid(v1, nodata, has_nodata)
            k2 = inside and _valid(v2, nodata, has_nodata)
            k3 = inside and _valid(v3, nodata, has_nodata)
            n0 += k0
            n1 += k1
            n2 += k2
            n3 += k3
            # adding 0.0 leaves a sum's bits as they are (the sums start at +0.0)
            t0 += v0 if k0 else 0.0
            t1 += v1 if k1 else 0.0
            t2 += v2 if k2 else 0.0
            t3 += v3 if k3 else 0.0
    mean0 = t0 / n0 if n0 else 0.0
    mean1 = t1 / n1 if n1 else 0.0
    mean2 = t2 / n2 if n2 else 0.0
    mean3 = t3 / n3 if n3 else 0.0
    q0 = q1 = q2 = q3 = 0.0
    for r in range(rows):
        for c in range(cols):
            inside = not use_mask or mask[r, c]
            v0, v1, v2, v3 = tile[b0, r, c], tile[b1, r, c], tile[b2, r, c], tile[b3, r, c]
            d0, d1, d2, d3 = v0 - mean0, v1 - mean1, v2 - mean2, v3 - mean3
            q0 += d0 * d0 if inside and _valid(v0, nodata, has_nodata) else 0.0
            q1 += d1 * d1 if inside and _valid(v1, nodata, has_nodata) else 0.0
            q2 += d2 * d2 if inside and _valid(v2, nodata, has_nodata) else 0.0
            q3 += d3 * d3 if inside and _valid(v3, nodata, has_nodata) else 0.0
    found = ((n0, mean0, q0), (n1, mean1, q1), (n2, mean2, q2), (n3, mean3, q3))
    for k in range(min(4, bands - b0)):
        n, mean, q = found[k]
        if n:
            _merge(counts, means, m2, b0 + k, n, mean, q)


@njit(cache=True, nogil=True)
def _pair_valid(a, s, nodata, has_nodata, use_mask, mask, r, c):
    """Whether co-located pixels ``a`` and ``s`` are both valid and inside the mask."""
    return (_valid(a, nodata, has_nodata) and _valid(s, nodata, has_nodata)
            and (not use_mask or mask[r, c]))


@njit(cache=True, nogil=True)
def accumulate_pair_moments(first, second, nodata, has_nodata, mask, use_mask, counts,
                            means_first, m2_first, means_second, m2_second):
    """Like :func:`accumulate_moments` for the pixels valid in both co-located tiles."""
    bands, rows, cols = first.shape
    for b in range(bands):
        n = 0
        total_a = 0.0
        total_b = 0.0
        for r in range(rows):
            for c in range(cols):
                a = first[b, r, c]
                s = second[b, r, c]
                if _pair_valid(a, s, nodata, has_nodata, use_mask, mask, r, c):
                    n += 1
                    total_a += a
                    total_b += s
        if n == 0:
            continue
        mean_a = total_a / n
        mean_b = total_b / n
        q_a = 0.0
        q_b = 0.0
        for r in range(rows):
            for c in range(cols):
                a = first[b, r, c]
                s = second[b, r, c]
                if _pair_valid(a, s, nodata, has_nodata, use_mask, mask, r, c):
                    q_a += (a - mean_a) * (a - mean_a)
                    q_b += (s - mean_b) * (s - mean_b)
        counts_b = counts.copy()
        _merge(counts, means_first, m2_first, b, n, mean_a, q_a)
        _merge(counts_b, means_second, m2_second, b, n, mean_b, q_b)


def accumulate_blocks(tile, nodata, has_nodata, mask, use_mask, block_rows, block_cols,
                      sums, counts, minimum):
    """Add valid pixels to ``sums``/``counts`` (bands, block rows, block cols).

    ``block_rows[r]`` and ``block_cols[c]`` give the block of each tile row
    and column. ``minimum`` (bands) tracks the smallest valid value, mask or not.
    Integers of at most 16 bits run :func:`integer_blocks` (integer sums along a row
    inside a block, vectorized; the float sums they make are those of adding one
    value at a time while below 2**53, as block sums of such values are), other types
    :func:`exact_blocks`.
    """
    small = tile.dtype.kind in "iu" and tile.dtype.itemsize <= 2
    kernel = integer_blocks if small else exact_blocks
    kernel(tile, nodata, has_nodata, mask, use_mask, block_rows, block_cols, sums, counts,
           minimum)


@njit(cache=True, nogil=True)
def _column_runs(block_cols):
    """The first column of each run of columns in one block, then the column count."""
    starts = [0]
    for c in range(1, block_cols.size):
        if block_cols[c] != block_cols[c - 1]:
            starts.append(c)
    starts.append(block_cols.size)
    return starts


@njit(cache=True, nogil=True)
def integer_blocks(tile, nodata, has_nodata, mask, use_mask, block_rows, block_cols, sums,
                   counts, minimum):
    """:func:`accumulate_blocks` of an integer tile, one row's run of columns in a block
    at a time (:func:`_integer_run`)."""
    bands, rows, cols = tile.shape
    starts = _column_runs(block_cols)
    found = np.zeros(3, np.int64)  # sum, count, smallest valid value of a run
    everywhere = np.ones(cols, np.uint8)
    for b in range(bands):
        low = minimum[b]
        for r in range(rows):
            br = block_rows[r]
            row = tile[b, r]
            inside = mask[r] if use_mask else everywhere
            for k in range(len(starts) - 1):
                start, end = starts[k], starts[k + 1]
                if _integer_run(row[start:end], inside[start:end], nodata, has_nodata, found):
                    low = min(low, found[2])
                bc = block_cols[start]
                sums[b, br, bc] += found[0]
                counts[b, br, bc] += found[1]
        minimum[b] = low


@njit(cache=True, nogil=True)
def _integer_run(values, inside, nodata, has_nodata, found):
    """Sum and count of the valid ``values`` where ``inside``, and the smallest valid
    value, inside or not, into ``found``; returns whether any value is valid."""
    total = 0
    n = 0
    valid_count = 0
    low = 1 << 40
    for c in range(values.size):
        v = np.int64(values[c])
        valid = (not has_nodata) | (v != nodata)
        low = min(low, v) if valid else low
        valid_count += valid
        use = valid & (inside[c] != 0)
        total += v if use else 0
        n += use
    found[0] = total
    found[1] = n
    found[2] = low
    return valid_count > 0


@njit(cache=True, nogil=True)
def exact_blocks(tile, nodata, has_nodata, mask, use_mask, block_rows, block_cols, sums,
                 counts, minimum):
    """:func:`accumulate_blocks` of any type: a block's running sum stays in a register
    along the columns of a row inside it (the same additions in the same order as one
    value at a time in memory)."""
    bands, rows, cols = tile.shape
    starts = _column_runs(block_cols)
    for b in range(bands):
        low = minimum[b]
        for r in range(rows):
            br = block_rows[r]
            for k in range(len(starts) - 1):
                bc = block_cols[starts[k]]
                total = sums[b, br, bc]
                n = counts[b, br, bc]
                for c in range(starts[k], starts[k + 1]):
                    v = tile[b, r, c]
                    if not _valid(v, nodata, has_nodata):
                        continue
                    if v < low:
                        low = v
                    if use_mask and not mask[r, c]:
                        continue
                    total += v
                    n += 1
                sums[b, br, bc] = total
                counts[b, br, bc] = n
        minimum[b] = low


def small_integers(tile, out):
    """Whether ``tile`` and ``out`` are both integer types of at most 16 bits: then the
    corrections sum inputs and outputs as integers (vectorized), which gives the float
    sums of the exact kernels (integers, exact below 2**53: up to 1.3e11 pixels of
    16-bit values per thread's piece of an image)."""
    return (tile.dtype.kind in "iu" and out.dtype.kind in "iu" and tile.dtype.itemsize <= 2
            and out.dtype.itemsize <= 2)


def linear_correction(tile, nodata, has_nodata, scale, offset, out, store, input_sums,
                      output_sums, output_counts, clamped_counts):
    """``scale[b] * x + offset[b]`` of the valid pixels of ``tile`` stored in ``out`` (the
    output type) as :func:`store_output` does (``store``: its output-range arguments
    ``lo, hi, is_int, nodata, has_nodata, nodata_up, nodata_down``); sums the valid inputs.

    Integers of at most 16 bits in and out (:func:`small_integers`) run
    :func:`linear_rows`, which stores the same pixels and sums in loops the compiler
    vectorizes; other types :func:`exact_linear_correction`."""
    kernel = linear_rows if small_integers(tile, out) else exact_linear_correction
    kernel(tile, nodata, has_nodata, scale, offset, out, store, input_sums, output_sums,
           output_counts, clamped_counts)


@njit(cache=True, nogil=True)
def linear_rows(tile, nodata, has_nodata, scale, offset, out, store, input_sums,
                output_sums, output_counts, clamped_counts):
    """:func:`linear_correction` of integer tiles into an integer type, row by row
    (:func:`_linear_row`), the sums kept as integers."""
    bands, rows, cols = tile.shape
    totals = np.zeros(4, np.int64)
    for b in range(bands):
        totals[:] = 0
        for r in range(rows):
            _linear_row(tile[b, r], nodata, has_nodata, scale[b], offset[b], out[b, r], store,
                        totals)
        input_sums[b] += totals[0]
        output_sums[b] += totals[1]
        output_counts[b] += totals[2]
        clamped_counts[b] += totals[3]


@njit(cache=True, nogil=True)
def _linear_row(row, nodata, has_nodata, a, o, out, store, totals):
    """One row of :func:`linear_rows`: stored values, adding to ``totals`` (input sum,
    output sum, valid count, clamped count)."""
    s_in = 0
    s_out = 0
    n = 0
    clamped = 0
    for c in range(row.size):
        x = row[c]
        valid = (not has_nodata) | (x != nodata)
        v, flag = _rounded(a * x + o, store)
        out[c] = v if valid else store[3]
        s_in += np.int64(x) if valid else 0
        s_out += np.int64(v) if valid else 0
        n += valid
        clamped += flag & valid
    totals[0] += s_in
    totals[1] += s_out
    totals[2] += n
    totals[3] += clamped


@njit(cache=True, nogil=True)
def _rounded(raw, store):
    """What :func:`_store_value` stores for ``raw`` in an integer type (without branches,
    so that loops over it vectorize), and whether it was clamped."""
    lo, hi, is_int, nodata, has_nodata, nodata_up, nodata_down = store
    v = np.rint(raw) if raw == raw else lo
    low = v < lo
    high = v > hi
    v = lo if low else (hi if high else v)
    v = (nodata_up if raw > nodata else nodata_down) if has_nodata and v == nodata else v
    return v, low | high


@njit(cache=True, nogil=True)
def exact_linear_correction(tile, nodata, has_nodata, scale, offset, out, store, input_sums,
                            output_sums, output_counts, clamped_counts):
    """:func:`linear_correction` of any types, value by value with float sums."""
    bands, rows, cols = tile.shape
    for b in range(bands):
        a = scale[b]
        o = offset[b]
        # running sums in registers (stores to `out` could alias them in memory)
        s_in, s_out = input_sums[b], output_sums[b]
        n, clamped = output_counts[b], clamped_counts[b]
        for r in range(rows):
            for c in range(cols):
                v = tile[b, r, c]
                if _valid(v, nodata, has_nodata):
                    s_in += v
                    stored, flag = _store_value(out, b, r, c, a * v + o, store)
                    s_out += stored
                    n += 1
                    clamped += flag
                else:
                    _store_nodata(out, b, r, c, store)
        input_sums[b], output_sums[b] = s_in, s_out
        output_counts[b], clamped_counts[b] = n, clamped


@njit(cache=True, nogil=True)
def blend_rows(block_map, band, r0, r1, fr, num, den):
    """Row step of the bilinear interpolation at one pixel row: for every block
    column, the weighted sum ``num`` and weight ``den`` of the two block rows
    around it (NaN blocks weighted out)."""
    for j in range(block_map.shape[2]):
        n = 0.0
        d = 0.0
        v = block_map[band, r0, j]
        if v == v:
            n += (1.0 - fr) * v
            d += 1.0 - fr
        v = block_map[band, r1, j]
        if v == v:
            n += fr * v
            d += fr
        num[j] = n
        den[j] = d


@njit(cache=True, nogil=True)
def blend_columns(num, den, c0, c1, fc):
    """Column step: the bilinear value between block centres, NaN when no block
    with a value has weight."""
    d = (1.0 - fc) * den[c0] + fc * den[c1]
    if d > 0.0:
        return ((1.0 - fc) * num[c0] + fc * num[c1]) / d
    return np.nan


#: Values per chunk of :func:`local_correction`'s vectorized gamma path (float64 buffers
#: of this many values, seven of them per thread: 3.5 MB).
GAMMA_CHUNK_VALUES = 1 << 16
#: A bound of the vectorized gamma path's distance to the C library's result, relative to
#: ``|alpha * P**gamma| + |offset| + 1`` (see :func:`gamma_results`).
GAMMA_BOUND = 2.0 ** -34
#: :func:`gamma_means` status of a value: nodata, kept as it is, gamma-corrected; set by
#: :func:`gamma_results`: gamma-corrected with the C library.
GAMMA_NODATA, GAMMA_KEEP, GAMMA_CORRECT, GAMMA_EXACT = 0, 1, 2, 3


def local_correction(tile, nodata, has_nodata, reference, local, row0, row1, row_frac,
                     col0, col1, col_frac, gamma, alpha, offsets, out, store, input_sums,
                     output_sums, output_counts, clamped_counts, *, bound=GAMMA_BOUND):
    """Local block correction of a tile (arguments of :func:`exact_local_correction`),
    the same pixels as it stores.

    Gamma from and into integers of at most 16 bits (:func:`small_integers`) takes
    the vectorized path: per
    band, chunks of rows through :func:`gamma_means` (the interpolated means), numpy's
    ``log``, ``divide`` and ``power`` (SIMD where numpy has them: a few ns per value
    instead of 20 for the C library's scalar calls, and within 2 ulps of them),
    :func:`gamma_results`, which recomputes with the C library any value whose
    rounding that difference could change (``bound``: :data:`GAMMA_BOUND`; a larger one
    sends more values to the C library), and :func:`store_results`. Other cases
    (linear; float inputs or outputs, whose last bits count) run
    :func:`exact_local_correction`.
    """
    if not (gamma and small_integers(tile, out)):
        exact_local_correction(tile, nodata, has_nodata, reference, local, row0, row1,
                               row_frac, col0, col1, col_frac, gamma, alpha, offsets, out,
                               store, input_sums, output_sums, output_counts, clamped_counts)
        return
    bands, rows, cols = tile.shape
    step = max(1, GAMMA_CHUNK_VALUES // max(1, cols))
    size = min(rows, step) * cols
    p, m_ref, m_local, l_ref, l_local, power = (np.empty(size) for _ in range(6))
    status = np.empty(size, np.uint8)
    totals = (input_sums, output_sums, output_counts, clamped_counts)
    for b in range(bands):
        for r in range(0, rows, step):
            end = min(rows, r + step)
            k = (end - r) * cols
            gamma_means(tile, b, r, end, nodata, has_nodata, reference, local, row0, row1,
                        row_frac, col0, col1, col_frac, offsets[b], p, m_ref, m_local, status)
            with np.errstate(all="ignore"):  # an overflow goes to the C library path
                np.log(m_ref[:k], out=l_ref[:k])
                np.log(m_local[:k], out=l_local[:k])
                np.divide(l_ref[:k], l_local[:k], out=power[:k])
                np.power(p[:k], power[:k], out=power[:k])
            gamma_results(tile, b, r, end, status, p, m_ref, m_local, l_ref, l_local, power,
                          alpha, offsets[b], store[3], store[4], bound)
            store_results(tile, b, r, end, status, power, out, store, *totals)


@njit(cache=True, nogil=True)
def gamma_means(tile, b, r_start, r_end, nodata, has_nodata, reference, local, row0, row1,
                row_frac, col0, col1, col_frac, o, p, m_ref, m_local, status):
    """Band ``b``, rows ``r_start:r_end`` of ``tile``, flattened: ``P = x + o`` and the
    two interpolated means plus ``o`` as :func:`exact_local_correction` computes them
    (the same operations, in loops without branches over one row, which the compiler
    vectorizes), and each value's status (:data:`GAMMA_CORRECT` when the gamma formula
    applies: ``p``, ``m_ref`` and ``m_local`` > 0, ``m_local`` != 1; otherwise 1 and e)."""
    cols = tile.shape[2]
    block_cols = reference.shape[2]
    ref_num = np.empty(block_cols)
    ref_den = np.empty(block_cols)
    loc_num = np.empty(block_cols)
    loc_den = np.empty(block_cols)
    for r in range(r_start, r_end):
        i0 = (r - r_start) * cols
        blend_rows(reference, b, row0[r], row1[r], row_frac[r], ref_num, ref_den)
        blend_rows(local, b, row0[r], row1[r], row_frac[r], loc_num, loc_den)
        start = 0
        while start < cols:  # runs of columns between the same two block centres
            ca, cb = col0[start], col1[start]
            end = start + 1
            while end < cols and col0[end] == ca and col1[end] == cb:
                end += 1
            fractions = col_frac[start:end]
            _interpolate_run(ref_num[ca], ref_num[cb], ref_den[ca], ref_den[cb], fractions,
                             m_ref[i0 + start:i0 + end])
            _interpolate_run(loc_num[ca], loc_num[cb], loc_den[ca], loc_den[cb], fractions,
                             m_local[i0 + start:i0 + end])
            start = end
        _gamma_inputs(tile[b, r], nodata, has_nodata, o, p[i0:i0 + cols],
                      m_ref[i0:i0 + cols], m_local[i0:i0 + cols], status[i0:i0 + cols])


@njit(cache=True, nogil=True, error_model="numpy")
def _interpolate_run(num0, num1, den0, den1, fractions, means):
    """:func:`blend_columns` at ``fractions`` between the same two block centres (numpy's
    error model: a division by a zero weight gives NaN or inf, replaced by NaN, instead
    of raising, so that the loop vectorizes)."""
    for c in range(fractions.size):
        fc = fractions[c]
        d = (1.0 - fc) * den0 + fc * den1
        m = ((1.0 - fc) * num0 + fc * num1) / d
        means[c] = m if d > 0.0 else np.nan


@njit(cache=True, nogil=True)
def _gamma_inputs(row, nodata, has_nodata, o, p, m_ref, m_local, status):
    """One row of :func:`gamma_means`: the status, ``P`` and the means plus ``o``."""
    for c in range(row.size):
        v = row[c]
        x = np.float64(v) + o
        mr = m_ref[c] + o
        ml = m_local[c] + o
        valid = (v == v) & ((not has_nodata) | (v != nodata))
        correct = (valid & (mr == mr) & (ml == ml) & (x > 0.0) & (mr > 0.0) & (ml > 0.0)
                   & (ml != 1.0))
        status[c] = GAMMA_CORRECT if correct else (GAMMA_KEEP if valid else GAMMA_NODATA)
        p[c] = x if correct else 1.0
        m_ref[c] = mr if correct else math.e
        m_local[c] = ml if correct else math.e


@njit(cache=True, nogil=True)
def gamma_results(tile, b, r_start, r_end, status, p, m_ref, m_local, l_ref, l_local, power,
                  alpha, o, nodata, has_nodata, bound):
    """Turn ``power`` (band ``b``, rows ``r_start:r_end``, flattened as by
    :func:`gamma_means`) into the results :func:`exact_local_correction` would store:
    ``x`` where the status says keep, ``alpha * power - o`` where the formula applies.

    ``l_ref``/``l_local`` are the logarithms of the means and ``power``
    ``P ** (l_ref / l_local)``, computed elsewhere within a few ulps of the C
    library. A result ``w = alpha * power - o`` is kept only when every value within
    ``bound * (|alpha * power| + |o| + 1)`` of it rounds to the same integer and
    compares to nodata alike. With :data:`GAMMA_BOUND` that holds if the logarithms
    and the power are within 2**-44 (relative, 500 ulps) of the C library's (numpy's
    are within 2 ulps),
    with ``|gamma * ln P| <= 36.1`` (``2**-30 < power < 2**52``) and logarithms
    >= 1/16 in size (means not within 6 % of 1): gamma is then within 2**-42.9
    (relative) of the C library's, which moves the power by at most
    ``|gamma * ln P| * 2**-42.9`` < 2**-37.7 relative. Any other value
    (:data:`GAMMA_EXACT`, rare: 26 of 192 M in the benchmark) is computed with the C library's
    ``log`` and ``pow`` as before.
    """
    cols = tile.shape[2]
    exact = 0
    for r in range(r_start, r_end):
        i0 = (r - r_start) * cols
        exact += _gamma_row(tile[b, r], status[i0:i0 + cols], l_ref[i0:i0 + cols],
                            l_local[i0:i0 + cols], power[i0:i0 + cols], alpha, o, nodata,
                            has_nodata, bound)
    if exact == 0:
        return
    for i in range((r_end - r_start) * cols):
        if status[i] == GAMMA_EXACT:
            candidate = alpha * p[i] ** (math.log(m_ref[i]) / math.log(m_local[i])) - o
            if math.isfinite(candidate):
                power[i] = candidate


@njit(cache=True, nogil=True)
def _gamma_row(row, status, l_ref, l_local, power, alpha, o, nodata, has_nodata, bound):
    """One row of :func:`gamma_results`; returns how many values need the C library."""
    exact = 0
    for c in range(row.size):
        x = np.float64(row[c])
        v = power[c]
        w = alpha * v - o
        margin = bound * (abs(alpha * v) + abs(o) + 1.0)
        safe = ((v > 2.0 ** -30) & (v < 2.0 ** 52) & (abs(l_ref[c]) >= 0.0625)
                & (abs(l_local[c]) >= 0.0625) & (abs(w) < 2.0 ** 51)
                & (abs(w - math.floor(w) - 0.5) > margin)
                & ((not has_nodata) | (abs(w - nodata) > margin)))
        state = status[c]
        correct = state == GAMMA_CORRECT
        unsafe = correct & (not safe)
        power[c] = w if correct else x
        status[c] = GAMMA_EXACT if unsafe else state
        exact += unsafe
    return exact


@njit(cache=True, nogil=True)
def store_results(tile, b, r_start, r_end, status, results, out, store, input_sums,
                  output_sums, output_counts, clamped_counts):
    """Store ``results`` (band ``b``, rows ``r_start:r_end``, flattened) into ``out``,
    an integer type, as :func:`_store_value` does (nodata where the status says so),
    and add to the band's sums (as integers: see :func:`small_integers`)."""
    cols = tile.shape[2]
    totals = np.zeros(4, np.int64)
    for r in range(r_start, r_end):
        i0 = (r - r_start) * cols
        _store_row(tile[b, r], status[i0:i0 + cols], results[i0:i0 + cols], out[b, r],
                   store, totals)
    input_sums[b] += totals[0]
    output_sums[b] += totals[1]
    output_counts[b] += totals[2]
    clamped_counts[b] += totals[3]


@njit(cache=True, nogil=True)
def _store_row(row, status, results, out, store, totals):
    """One row of :func:`store_results`; adds to ``totals`` (input sum, output sum,
    valid count, clamped count)."""
    s_in = 0
    s_out = 0
    n = 0
    clamped = 0
    for c in range(row.size):
        valid = status[c] != GAMMA_NODATA
        v, flag = _rounded(results[c], store)
        out[c] = v if valid else store[3]
        s_in += np.int64(row[c]) if valid else 0
        s_out += np.int64(v) if valid else 0
        n += valid
        clamped += flag & valid
    totals[0] += s_in
    totals[1] += s_out
    totals[2] += n
    totals[3] += clamped


@njit(cache=True, nogil=True)
def exact_local_correction(tile, nodata, has_nodata, reference, local, row0, row1, row_frac,
                     col0, col1, col_frac, gamma, alpha, offsets, out, store, input_sums,
                     output_sums, output_counts, clamped_counts):
    """Local block correction of a tile, stored in ``out`` as :func:`linear_correction`
    stores its results, every value through the C library's ``log`` and ``pow``
    (see :func:`local_correction`).

    ``row0/row1/row_frac`` (per tile row) and ``col0/col1/col_frac`` (per tile
    column) locate each pixel centre between block centres; both block maps are
    interpolated bilinearly there (a row step per pixel row, a column step per
    pixel). Gamma: ``alpha * (x + o) ** (ln(Mref + o) / ln(Mlocal + o)) - o``
    with the band's offset ``o``; linear: ``x * Mref / Mlocal``. Where a mean is
    undefined or the result is not finite the pixel keeps its value.
    """
    bands, rows, cols = tile.shape
    block_cols = reference.shape[2]
    ref_num = np.empty(block_cols)
    ref_den = np.empty(block_cols)
    loc_num = np.empty(block_cols)
    loc_den = np.empty(block_cols)
    for b in range(bands):
        o = offsets[b]
        s_in, s_out = input_sums[b], output_sums[b]
        n, clamped = output_counts[b], clamped_counts[b]
        for r in range(rows):
            blend_rows(reference, b, row0[r], row1[r], row_frac[r], ref_num, ref_den)
            blend_rows(local, b, row0[r], row1[r], row_frac[r], loc_num, loc_den)
            for c in range(cols):
                v = tile[b, r, c]
                if not _valid(v, nodata, has_nodata):
                    _store_nodata(out, b, r, c, store)
                    continue
                s_in += v
                x = np.float64(v)
                result = x
                ca = col0[c]
                cb = col1[c]
                fc = col_frac[c]
                m_ref = blend_columns(ref_num, ref_den, ca, cb, fc)
                m_local = blend_columns(loc_num, loc_den, ca, cb, fc)
                if m_ref == m_ref and m_local == m_local:
                    if gamma:
                        p = x + o
                        mr = m_ref + o
                        ml = m_local + o
                        if p > 0.0 and mr > 0.0 and ml > 0.0 and ml != 1.0:
                            candidate = alpha * p ** (math.log(mr) / math.log(ml)) - o
                            if math.isfinite(candidate):
                                result = candidate
                    elif m_local != 0.0:
                        candidate = x * m_ref / m_local
                        if math.isfinite(candidate):
                            result = candidate
                stored, flag = _store_value(out, b, r, c, result, store)
                s_out += stored
                n += 1
                clamped += flag
        input_sums[b], output_sums[b] = s_in, s_out
        output_counts[b], clamped_counts[b] = n, clamped


@njit(cache=True, nogil=True)
def _store_nodata(out, b, r, c, store):
    out[b, r, c] = store[3] if store[4] else np.nan


@njit(cache=True, nogil=True)
def _store_value(out, b, r, c, raw, store):
    """Store one valid result ``raw`` as :func:`store_output` does; returns (the value
    stored, 1 if it was clamped else 0)."""
    lo, hi, is_int, nodata, has_nodata, nodata_up, nodata_down = store
    v = raw
    if v != v:
        v = lo
    if is_int:
        v = np.rint(v)
    clamped = 0
    if v < lo:
        v = lo
        clamped = 1
    elif v > hi:
        v = hi
        clamped = 1
    out[b, r, c] = v
    if has_nodata and out[b, r, c] == nodata:
        out[b, r, c] = nodata_up if raw > nodata else nodata_down
    return out[b, r, c], clamped


@njit(cache=True, nogil=True)
def store_output(values, valid, out, lo, hi, is_int, nodata, has_nodata, nodata_up,
                 nodata_down, output_sums, output_counts, clamped_counts):
    """Write ``values`` into ``out`` (the output type): nodata where not ``valid``;
    integers rounded; everything clamped to [lo, hi]; a valid result equal to
    ``nodata`` becomes ``nodata_up`` (result above it) or ``nodata_down``. Sums
    and counts the valid outputs per band, and counts those clamped."""
    store = (lo, hi, is_int, nodata, has_nodata, nodata_up, nodata_down)
    bands, rows, cols = values.shape
    for b in range(bands):
        for r in range(rows):
            for c in range(cols):
                if not valid[b, r, c]:
                    _store_nodata(out, b, r, c, store)
                    continue
                stored, flag = _store_value(out, b, r, c, values[b, r, c], store)
                output_sums[b] += stored
                output_counts[b] += 1
                clamped_counts[b] += flag
