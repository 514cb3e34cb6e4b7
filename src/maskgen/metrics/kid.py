"""Kernel Inception Distance (Bińkowski et al. 2018).

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
``num_subsets`` random subsets of ``subset_size`` rows drawn without replacement from each set
(the size is clipped to the smaller set). Defaults (100 subsets of 1000) are the usual ones
(torch-fidelity, StyleGAN's metrics). Unlike FID it has no bias in the number of samples, so
it is near 0 (and can be slightly negative) for two samples of the same distribution.
"""

from __future__ import annotations

import numpy as np

from maskgen.errors import MaskgenError

__all__ = ["kernel_inception_distance"]


def _cube(k: np.ndarray) -> np.ndarray:
    return k * k * k


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    kxx, kyy, kxy = (_cube(a @ b.T / d + 1.0) for a, b in ((x, x), (y, y), (x, y)))
    same = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(same - 2.0 * kxy.sum() / (m * m))


def kernel_inception_distance(
    x: np.ndarray, y: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over subsets; x, y are feature sets [N, D], [M, D]."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise MaskgenError(f"feature sets must be [N, D] with the same D, got {x.shape} and {y.shape}")
    m = min(len(x), len(y), int(subset_size))
    if m < 2:
        raise MaskgenError(f"KID needs at least 2 rows per subset, got {m}")
    if num_subsets < 1:
        raise MaskgenError("KID needs at least one subset")
    rng = np.random.default_rng(seed)
    mmds = np.empty(num_subsets)
    for i in range(num_subsets):
        xs = x[rng.choice(len(x), m, replace=False)]
        ys = y[rng.choice(len(y), m, replace=False)]
        mmds[i] = _mmd2_unbiased(xs, ys)
    return float(mmds.mean()), float(mmds.std())
