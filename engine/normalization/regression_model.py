"""The least-squares system of global regression, solved directly per band.

Unknowns per band: a scale ``a_i`` and an offset ``b_i`` for every image.
For each overlapping pair i < j with at least one model image, with ``w`` the
pair weight (the overlap pixel count ``s``, or 1 without size weighting) and
``m``, ``σ`` the overlap mean and std of each image's co-located pixels::

    w·f_mean·(m_i·a_i + b_i − m_j·a_j − b_j) = 0
    w·f_std·(σ_i·a_i − σ_j·a_j) = 0

and for each model image k, with whole-image mean ``M_k`` and std ``S_k`` and
``p = Σw / (2·n)`` (``p = 1`` without overlap rows)::

    p·(M_k·a_k + b_k) = p·M_k
    p·S_k·a_k = p·S_k

The system is linear; it is solved as ``x = x0 + d`` with ``x0`` the identity
(a = 1, b = 0) and ``d`` the minimum-norm least-squares correction, so an
image no row constrains keeps a = 1, b = 0.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import TesseraError


@dataclass
class GlobalModel:
    """Scales and offsets, arrays (images, bands), in the order of ``names``."""

    names: list
    scales: np.ndarray
    offsets: np.ndarray
    unconstrained: list

    def adjustment(self, name, band):
        index = self.names.index(name)
        return {"scale": float(self.scales[index, band]),
                "offset": float(self.offsets[index, band])}


def build_system(names, model_names, whole, overlaps, band, mean_factor=1.0, std_factor=1.0,
                 weight_by_size=True):
    """The matrix ``A`` and right-hand side ``y`` of one band.

    ``whole`` maps names to :class:`~.overlap_statistics.Moments`;
    ``overlaps`` maps (name_i, name_j), i before j in ``names``, to the pair
    (Moments of i's pixels, Moments of j's pixels) of their overlap.
    """
    n = len(names)
    position = {name: index for index, name in enumerate(names)}
    model = set(model_names)
    rows, targets = [], []
    total_weight = 0.0
    for (name_i, name_j), (stats_i, stats_j) in overlaps.items():
        i, j = position[name_i], position[name_j]
        if i > j:
            i, j, stats_i, stats_j = j, i, stats_j, stats_i
        if names[i] not in model and names[j] not in model:
            continue
        size = int(stats_i.counts[band])
        if size <= 0:
            continue
        weight = float(size) if weight_by_size else 1.0
        mean_row = np.zeros(2 * n)
        mean_row[2 * i], mean_row[2 * i + 1] = stats_i.means[band], 1.0
        mean_row[2 * j], mean_row[2 * j + 1] = -stats_j.means[band], -1.0
        std_row = np.zeros(2 * n)
        std_row[2 * i], std_row[2 * j] = stats_i.stds[band], -stats_j.stds[band]
        rows += [weight * mean_factor * mean_row, weight * std_factor * std_row]
        targets += [0.0, 0.0]
        total_weight += weight
    p = 1.0 if total_weight == 0 else total_weight / (2.0 * n)
    for name in names:
        if name not in model:
            continue
        k = position[name]
        mean, std = whole[name].means[band], whole[name].stds[band]
        mean_row = np.zeros(2 * n)
        mean_row[2 * k], mean_row[2 * k + 1] = p * mean, p
        std_row = np.zeros(2 * n)
        std_row[2 * k] = p * std
        rows += [mean_row, std_row]
        targets += [p * mean, p * std]
    return np.array(rows).reshape(-1, 2 * n), np.array(targets)


def solve_global_model(names, model_names, whole, overlaps, bands, mean_factor=1.0,
                       std_factor=1.0, weight_by_size=True):
    """Solve every band's system; returns a :class:`GlobalModel`."""
    names = list(names)
    missing = [name for name in model_names if name not in names]
    if missing:
        raise TesseraError(f"Model image(s) {', '.join(missing)} are not among the images.")
    n = len(names)
    scales = np.ones((n, bands))
    offsets = np.zeros((n, bands))
    free = np.ones(n, bool)
    for band in range(bands):
        matrix, target = build_system(names, model_names, whole, overlaps, band, mean_factor,
                                      std_factor, weight_by_size)
        identity = np.tile([1.0, 0.0], n)
        if matrix.size:
            correction = np.linalg.lstsq(matrix, target - matrix @ identity, rcond=None)[0]
            solution = identity + correction
            used = np.abs(matrix).sum(axis=0) > 0
            free &= ~(used[0::2] | used[1::2])
        else:
            solution = identity
        scales[:, band] = solution[0::2]
        offsets[:, band] = solution[1::2]
    return GlobalModel(names, scales, offsets, [names[i] for i in np.flatnonzero(free)])
