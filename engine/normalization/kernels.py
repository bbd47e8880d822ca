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
    """Merge each band's valid pixels of ``tile`` (bands, rows, cols) into the moments."""
    bands, rows, cols = tile.shape
    for b in range(bands):
        n = 0
        total = 0.0
        for r in range(rows):
            for c in range(cols):
                v = tile[b, r, c]
                if _valid(v, nodata, has_nodata) and (not use_mask or mask[r, c]):
                    n += 1
                    total += v
        if n == 0:
            continue
        mean = total / n
        q = 0.0
        for r in range(rows):
            for c in range(cols):
                v = tile[b, r, c]
                if _valid(v, nodata, has_nodata) and (not use_mask or mask[r, c]):
                    d = v - mean
                    q += d * d
        _merge(counts, means, m2, b, n, mean, q)


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


@njit(cache=True, nogil=True)
def accumulate_blocks(tile, nodata, has_nodata, mask, use_mask, block_rows, block_cols,
                      sums, counts, minimum):
    """Add valid pixels to ``sums``/``counts`` (bands, block rows, block cols).

    ``block_rows[r]`` and ``block_cols[c]`` give the block of each tile row
    and column. ``minimum`` (bands) tracks the smallest valid value, mask or not.
    """
    bands, rows, cols = tile.shape
    for b in range(bands):
        for r in range(rows):
            br = block_rows[r]
            for c in range(cols):
                v = tile[b, r, c]
                if not _valid(v, nodata, has_nodata):
                    continue
                if v < minimum[b]:
                    minimum[b] = v
                if use_mask and not mask[r, c]:
                    continue
                bc = block_cols[c]
                sums[b, br, bc] += v
                counts[b, br, bc] += 1


@njit(cache=True, nogil=True)
def linear_correction(tile, nodata, has_nodata, scale, offset, out, store, input_sums,
                      output_sums, output_counts, clamped_counts):
    """``scale[b] * x + offset[b]`` of the valid pixels of ``tile`` stored in ``out`` (the
    output type) as :func:`store_output` does (``store``: its output-range arguments
    ``lo, hi, is_int, nodata, has_nodata, nodata_up, nodata_down``); sums the valid inputs."""
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


@njit(cache=True, nogil=True)
def local_correction(tile, nodata, has_nodata, reference, local, row0, row1, row_frac,
                     col0, col1, col_frac, gamma, alpha, offsets, out, store, input_sums,
                     output_sums, output_counts, clamped_counts):
    """Local block correction of a tile, stored in ``out`` as :func:`linear_correction`
    stores its results.

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
