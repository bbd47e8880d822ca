"""An independent reference of every statistic of the catalogue (numpy and scipy,
written from the definitions in the README, not from the engine's code).

A new statistic adds its definition here (one of the three files it touches).
"""

import numpy as np
import scipy.stats
from zonal_cases import weighted_quantile


def reference(values, weights=None, percentiles=(), method="inverted_cdf"):
    """Every statistic of the valid ``values`` (1-D; NaN and nodata already removed),
    weighted by ``weights`` (None: every pixel counts 1). Undefined values are None;
    ``frac`` maps each class value to its share. A zone without a valid pixel gives
    ``{"pixcount": 0}``."""
    values = np.asarray(values, np.float64)
    weighted = weights is not None
    weights = np.ones(values.shape) if weights is None else np.asarray(weights, np.float64)
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if not values.size:
        return {"pixcount": 0.0}
    total = weights.sum()
    mean = np.sum(weights * values) / total
    distinct, inverse = np.unique(values, return_inverse=True)
    summed = np.bincount(inverse, weights)
    out = {
        "pixcount": total, "min": values.min(), "max": values.max(),
        "sum": np.sum(weights * values), "mean": mean, "range": values.max() - values.min(),
        "mode": distinct[np.argmax(summed)],       # argmax/argmin: the first is the smallest
        "minority": distinct[np.argmin(summed)], "variety": float(len(distinct)),
        "frac": dict(zip(distinct.tolist(), (summed / total).tolist(), strict=True)),
    }
    if weighted:  # the definitions scipy's bias=True forms generalise
        variance = np.sum(weights * (values - mean) ** 2) / total
        m3 = np.sum(weights * (values - mean) ** 3) / total
        m4 = np.sum(weights * (values - mean) ** 4) / total
        skewness = m3 / variance ** 1.5 if variance > 0 else None
        kurtosis = m4 / variance ** 2 - 3 if variance > 0 else None
    constant = values.min() == values.max()
    if not weighted:
        variance = values.var()
        skewness = None if constant else float(scipy.stats.skew(values, bias=True))
        kurtosis = None if constant else float(
            scipy.stats.kurtosis(values, fisher=True, bias=True))
    out.update(variance=variance, stddev=np.sqrt(variance),
               cv=None if mean == 0 else np.sqrt(variance) / mean,
               skewness=None if constant else skewness,
               kurtosis=None if constant else kurtosis)
    for p in [50, *percentiles]:
        if weighted:
            value = weighted_quantile(distinct, summed, p / 100)
        else:
            value = np.percentile(values, p, method=method)
        out["median" if p == 50 else f"p{np.format_float_positional(p, trim='-')}"] = value
    return out
