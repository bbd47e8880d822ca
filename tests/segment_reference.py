"""An independent numpy reference for per-segment statistics (np.unique / sort per segment)."""

import numpy as np


def reference_stats(segments, band, nodata=None, null_id=0, percentiles=(),
                    method="inverted_cdf"):
    """{segment id: {stat: value}} for every id present in ``segments`` but the null id.

    Segments without a valid pixel map to ``{"pixcount": 0}``.
    """
    ids = segments.ravel()
    values = band.ravel()
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], values[order]
    unique, starts = np.unique(ids, return_index=True)
    bounds = list(starts) + [len(ids)]
    result = {}
    for index, sid in enumerate(unique):
        if int(sid) == null_id:
            continue
        v = values[bounds[index]:bounds[index + 1]]
        valid = ~np.isnan(v) if v.dtype.kind == "f" else np.ones(v.shape, bool)
        if nodata is not None:
            valid &= v != nodata
        v = v[valid]
        if v.size == 0:
            result[int(sid)] = {"pixcount": 0}
            continue
        wide = v.astype(np.float64)
        distinct, counts = np.unique(v, return_counts=True)
        stats = {
            "pixcount": v.size, "min": wide.min(), "max": wide.max(), "sum": wide.sum(),
            "mean": wide.mean(), "stddev": wide.std(), "variance": wide.var(),
            "range": wide.max() - wide.min(),
            "median": float(np.percentile(v, 50, method=method)),
            "mode": float(distinct[np.argmax(counts)]),         # argmax: first = smallest
            "minority": float(distinct[np.argmin(counts)]),
            "variety": len(distinct),
        }
        for p in percentiles:
            stats[f"p{np.format_float_positional(p, trim='-')}"] = float(
                np.percentile(v, p, method=method))
        result[int(sid)] = stats
    return result


def assert_columns_match(rat, reference, band_number, missing=-9999.0, rtol=1e-9,
                         stats=None):
    """Check RAT columns ``b<band>_<stat>`` against the reference, row by row."""
    checked = 0
    for sid, expected in reference.items():
        for stat, value in expected.items():
            if stats is not None and stat not in stats:
                continue
            column = f"b{band_number}_{stat}"
            if column not in rat:
                continue
            got = rat[column][sid]
            assert np.isclose(got, value, rtol=rtol, atol=0), (column, sid, got, value)
            checked += 1
        if expected == {"pixcount": 0}:
            for column, values in rat.items():
                if column.startswith(f"b{band_number}_") and column != f"b{band_number}_pixcount":
                    got = values[sid]
                    assert (np.isnan(got) and np.isnan(missing)) or got == missing, (column, sid)
    assert checked, "nothing was compared"
    return checked
