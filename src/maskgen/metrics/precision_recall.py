"""Improved precision and recall (Kynkäänniemi et al. 2019), as the reference evaluator does it.

Each point of a set gets a radius: the distance to its k-th nearest neighbour in its own set,
not counting itself (k=3). The set's manifold is the union of the balls. A point counts as
inside if its distance to ANY point of the set is <= that point's radius (so a sample exactly
on a boundary counts, and k+1 identical points give radius 0 and still cover themselves).

precision = fraction of samples inside the real manifold;
recall    = fraction of real points inside the sample manifold.

Distances are computed in torch in row batches: memory is O(batch_size * N), so 10k x 10k
sets of 2048-d features fit easily. Squared distances are compared with squared radii (same
order). "Excluding itself" is implemented as the (k+1)-th smallest distance in the row
including the point itself, which is what the reference does (a duplicate of the point then
counts as a neighbour at distance 0). Both sets are centred by the real set's mean first
(distances do not change) so the |a|^2 - 2ab + |b|^2 expansion loses little precision; the
default dtype is float64.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from maskgen.errors import MaskgenError

__all__ = ["precision_recall", "manifold_radii"]


def _sq_dists(a: Tensor, b: Tensor, a_sq: Tensor, b_sq: Tensor) -> Tensor:
    return (a_sq[:, None] - 2.0 * (a @ b.T) + b_sq[None, :]).clamp_(min=0)


def manifold_radii(points: Tensor, k: int = 3, batch_size: int = 1000) -> Tensor:
    """Squared distance of each row to its k-th nearest neighbour in ``points``, excluding itself."""
    n = len(points)
    if n <= k:
        raise MaskgenError(f"need more than k={k} points to estimate a manifold, got {n}")
    sq = (points * points).sum(1)
    out = torch.empty(n, dtype=points.dtype, device=points.device)
    for s in range(0, n, batch_size):
        d = _sq_dists(points[s : s + batch_size], points, sq[s : s + batch_size], sq)
        # the row's own distance (0) is the smallest, so the (k+1)-th smallest is the k-th neighbour
        out[s : s + batch_size] = torch.kthvalue(d, k + 1, dim=1).values
    return out


@torch.no_grad()
def precision_recall(
    real: np.ndarray | Tensor,
    fake: np.ndarray | Tensor,
    k: int = 3,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> tuple[float, float]:
    """(precision, recall) of sample features ``fake`` [M, D] against real features ``real`` [N, D]."""
    r = torch.as_tensor(np.asarray(real) if not isinstance(real, Tensor) else real).to(device=device, dtype=dtype)
    f = torch.as_tensor(np.asarray(fake) if not isinstance(fake, Tensor) else fake).to(device=device, dtype=dtype)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise MaskgenError(f"feature sets must be [N, D] with the same D, got {tuple(r.shape)} and {tuple(f.shape)}")
    centre = r.mean(0, keepdim=True)
    r, f = r - centre, f - centre
    r_rad = manifold_radii(r, k, batch_size)
    f_rad = manifold_radii(f, k, batch_size)
    r_sq, f_sq = (r * r).sum(1), (f * f).sum(1)
    in_real = torch.zeros(len(f), dtype=torch.bool, device=r.device)  # sample inside the real manifold
    in_fake = torch.zeros(len(r), dtype=torch.bool, device=r.device)  # real point inside the sample manifold
    for s in range(0, len(f), batch_size):
        d = _sq_dists(f[s : s + batch_size], r, f_sq[s : s + batch_size], r_sq)  # [b, N]
        in_real[s : s + batch_size] = (d <= r_rad[None, :]).any(1)
        in_fake |= (d <= f_rad[s : s + batch_size, None]).any(0)
    return float(in_real.double().mean()), float(in_fake.double().mean())
