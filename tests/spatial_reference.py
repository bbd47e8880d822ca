"""Independent numpy references for the per-segment spatial statistics.

Whole-raster numpy (shifted comparisons, bincount) for the shape statistics,
brute force over all pixel pairs for the variogram, and a literal loop in
the manner of pyshepseg's ``userFuncVariogram`` for the diagonal RMS form.
"""

import math

import numpy as np


def pixel_centres(rows, cols, gt):
    x = gt[0] + gt[1] * (cols + 0.5) + gt[2] * (rows + 0.5)
    y = gt[3] + gt[4] * (cols + 0.5) + gt[5] * (rows + 0.5)
    return x, y


def _neighbour_outside(seg, dy, dx):
    """Boolean array: the neighbour at (dy, dx) is beyond the raster or another id."""
    padded = np.pad(seg.astype(np.int64), 1, constant_values=-1)
    rows, cols = seg.shape
    neighbour = padded[1 + dy:1 + dy + rows, 1 + dx:1 + dx + cols]
    return neighbour != seg


def shape_reference(seg, gt, null_id=0, connectivity=8):
    """{id: {column: value}} of centroid, bbox, area, perimeter and edge pixels."""
    side = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    diagonal = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    neighbours = side + (diagonal if connectivity == 8 else [])
    edge = np.zeros(seg.shape, bool)
    for dy, dx in neighbours:
        edge |= _neighbour_outside(seg, dy, dx)
    col_sides = _neighbour_outside(seg, 0, -1).astype(int) + _neighbour_outside(seg, 0, 1)
    row_sides = _neighbour_outside(seg, -1, 0).astype(int) + _neighbour_outside(seg, 1, 0)
    pixel_width = math.hypot(gt[1], gt[4])
    pixel_height = math.hypot(gt[2], gt[5])
    pixel_area = abs(gt[1] * gt[5] - gt[2] * gt[4])
    result = {}
    for sid in np.unique(seg):
        if sid == null_id:
            continue
        inside = seg == sid
        rows, cols = np.nonzero(inside)
        x, y = pixel_centres(rows, cols, gt)
        corner_cols = np.array([cols.min(), cols.max() + 1])
        corner_rows = np.array([rows.min(), rows.max() + 1])
        cc, rr = np.meshgrid(corner_cols, corner_rows)
        cx = gt[0] + gt[1] * cc + gt[2] * rr
        cy = gt[3] + gt[4] * cc + gt[5] * rr
        result[int(sid)] = {
            "centroid_x": x.mean(), "centroid_y": y.mean(),
            "xmin": cx.min(), "xmax": cx.max(), "ymin": cy.min(), "ymax": cy.max(),
            "area": inside.sum() * pixel_area,
            "perimeter": col_sides[inside].sum() * pixel_height
            + row_sides[inside].sum() * pixel_width,
            "edge_pixels": int(edge[inside].sum()),
        }
    return result


def valid_mask(values, nodata=None):
    valid = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    if nodata is not None:
        valid &= values != nodata
    return valid


def variogram_reference(seg, values, gt, max_lag, nodata=None, null_id=0):
    """{id: [gamma_1..gamma_max_lag or None]} by brute force over all pixel pairs."""
    valid = valid_mask(values, nodata)
    unit = math.hypot(gt[1], gt[4])
    result = {}
    for sid in np.unique(seg):
        if sid == null_id:
            continue
        rows, cols = np.nonzero((seg == sid) & valid)
        v = values[rows, cols].astype(np.float64)
        x, y = pixel_centres(rows, cols, gt)
        first, second = np.triu_indices(len(v), k=1)   # every unordered pair once
        distance = np.hypot(x[first] - x[second], y[first] - y[second]) / unit
        lag = np.ceil(distance - 0.5).astype(int)      # (k - 1/2) < d <= (k + 1/2)
        squared = (v[first] - v[second]) ** 2
        gammas = []
        for k in range(1, max_lag + 1):
            chosen = lag == k
            gammas.append(squared[chosen].sum() / (2 * chosen.sum()) if chosen.any() else None)
        result[int(sid)] = gammas
    return result


def diagonal_rms_reference(seg, values, max_lag, nodata=None, null_id=0):
    """{id: [drms_1..drms_max_lag or None]} as pyshepseg's ``userFuncVariogram`` computes
    them: the segment's values in a 2-D array over its extent, then for every valid pixel
    the pixels dy, dx = 1..max_lag below-right, binned by int(sqrt(dx² + dy²))."""
    valid = valid_mask(values, nodata)
    result = {}
    for sid in np.unique(seg):
        if sid == null_id:
            continue
        rows, cols = np.nonzero((seg == sid) & valid)
        if not len(rows):
            result[int(sid)] = [None] * max_lag
            continue
        tile = np.full((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1), np.nan)
        tile[rows - rows.min(), cols - cols.min()] = values[rows, cols]
        counts = [0] * max_lag
        sums = [0.0] * max_lag
        height, width = tile.shape
        for y in range(height):
            for x in range(width):
                if np.isnan(tile[y, x]):
                    continue
                for dy in range(1, max_lag + 1):
                    for dx in range(1, max_lag + 1):
                        if y + dy >= height or x + dx >= width or np.isnan(tile[y + dy, x + dx]):
                            continue
                        lag = int(np.sqrt(dy * dy + dx * dx))
                        if 0 < lag <= max_lag:
                            counts[lag - 1] += 1
                            sums[lag - 1] += (tile[y, x] - tile[y + dy, x + dx]) ** 2
        result[int(sid)] = [math.sqrt(s / n) if n else None for s, n in zip(sums, counts,
                                                                               strict=True)]
    return result


def assert_rat_matches(rat, expected, columns=None, rtol=1e-9, missing=-9999.0):
    """Compare RAT columns with a reference {id: {column: value or None}}."""
    checked = 0
    for sid, values in expected.items():
        for column, value in values.items():
            if columns is not None and column not in columns:
                continue
            got = rat[column][sid]
            if value is None:
                assert (np.isnan(missing) and np.isnan(got)) or got == missing, (column, sid, got)
            else:
                assert np.isclose(got, value, rtol=rtol, atol=1e-9), (column, sid, got, value)
            checked += 1
    assert checked, "nothing was compared"
    return checked


def lag_columns(reference, prefix):
    """{id: [v1, v2, ...]} -> {id: {prefix_1: v1, ...}}."""
    return {sid: {f"{prefix}_{k + 1}": v for k, v in enumerate(values)}
            for sid, values in reference.items()}
