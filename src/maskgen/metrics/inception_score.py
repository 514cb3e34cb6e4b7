"""Inception Score: exp(E_x KL(p(y|x) || p(y))), per split, then mean and std over splits.

Two ways of splitting, which give different numbers for the same predictions:

- ``splits_mode="evaluator"`` (default; openai/guided-diffusion's evaluator, after
  improved-gan): consecutive chunks of ``split_size`` (5000) rows in the given order, the last
  one possibly shorter; the score is the mean over chunks.
- ``splits_mode="torch-fidelity"``: ``num_splits`` (10) near-equal consecutive splits, rows
  ``i*N//s`` to ``(i+1)*N//s``. torch-fidelity shuffles the rows first by default
  (``np.random.RandomState(2020).permutation(N)``); here ``shuffle`` is False by default so the
  order is the caller's, and ``shuffle=True, shuffle_seed=2020`` reproduces torch-fidelity.

The std returned is numpy's (ddof=0) across splits. Inputs are logits (softmax is applied, in
float64) or probabilities (``from_logits=False``; rows must be non-negative and sum to ~1).
Terms with p(y|x) = 0 contribute 0 (0 log 0 = 0), so one-hot predictions are fine: K
classes predicted equally often give exactly K, identical predictions give exactly 1.

The reference IS uses the 1008-way logits of the 2015-12-05 Inception graph computed from
pool3 times the output weights WITHOUT the bias; the bundled TorchScript pool3 network has no
such head, so IS needs a network that provides logits.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, xlogy

from maskgen.errors import MaskgenError

__all__ = ["inception_score"]


def _split_score(p: np.ndarray, log_p: np.ndarray) -> float:
    py = p.mean(0, keepdims=True)
    # sum_y p log p - p log p(y), with 0 log 0 = 0 (log_p is only used where p > 0)
    kl = p * np.where(p > 0, log_p, 0.0) - xlogy(p, np.broadcast_to(py, p.shape))
    return float(np.exp(kl.sum(1).mean()))


def inception_score(
    x: np.ndarray,
    from_logits: bool = True,
    splits_mode: str = "evaluator",
    split_size: int = 5000,
    num_splits: int = 10,
    shuffle: bool = False,
    shuffle_seed: int = 2020,
) -> tuple[float, float]:
    """(mean, std) of the Inception Score of class predictions ``x`` [N, K]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 1 or x.shape[1] < 1:
        raise MaskgenError(f"Inception Score needs predictions [N, K], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise MaskgenError("Inception Score: predictions contain NaN or infinite values")
    if from_logits:
        log_p = log_softmax(x, axis=1)
        p = np.exp(log_p)
    else:
        if (x < 0).any() or not np.allclose(x.sum(1), 1.0, atol=1e-3):
            raise MaskgenError("Inception Score: probabilities must be non-negative rows summing to 1 (pass from_logits=True for logits)")
        p = x
        with np.errstate(divide="ignore"):
            log_p = np.log(p)
    n = len(p)
    if splits_mode == "evaluator":
        if split_size < 1:
            raise MaskgenError("split_size must be positive")
        bounds = [(s, min(s + split_size, n)) for s in range(0, n, split_size)]
    elif splits_mode == "torch-fidelity":
        if not 1 <= num_splits <= n:
            raise MaskgenError(f"num_splits must be between 1 and the number of rows ({n}), got {num_splits}")
        if shuffle:
            perm = np.random.RandomState(shuffle_seed).permutation(n)
            p, log_p = p[perm], log_p[perm]
        bounds = [(i * n // num_splits, (i + 1) * n // num_splits) for i in range(num_splits)]
    else:
        raise MaskgenError(f"unknown splits_mode {splits_mode!r} (use 'evaluator' or 'torch-fidelity')")
    scores = np.array([_split_score(p[a:b], log_p[a:b]) for a, b in bounds])
    return float(scores.mean()), float(scores.std())
