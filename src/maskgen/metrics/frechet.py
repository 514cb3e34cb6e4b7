"""Fréchet distance between two Gaussians (FID when the moments are Inception pool3's).

``frechet_distance`` defaults to the reference evaluator's computation (openai/guided-diffusion
``evaluations/evaluator.py``, itself pytorch-fid's): ``scipy.linalg.sqrtm(sigma1 @ sigma2)``;
if that is not finite, retry with ``eps`` added to both diagonals; if the result is complex
with an imaginary diagonal entry above 1e-3 in absolute value, fail; otherwise take the real
part and return ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(covmean)``.

``method="eig"`` computes tr(sqrtm(sigma1 @ sigma2)) as the sum of the square roots of the
eigenvalues of sigma1 @ sigma2 (clipped at 0). It obtains those eigenvalues from the
symmetric matrix sqrt(sigma1) sigma2 sqrt(sigma1), which has the same spectrum, with two
symmetric eigendecompositions: several times faster than sqrtm for D=2048 and agreeing with
it to ~1e-9 relative on well-conditioned inputs.

``frechet_distance_features`` computes the same quantity straight from two feature sets; when
the sets are smaller than the dimension (the covariances are then singular) it uses the
singular values of the centred cross-product, which is exact and takes milliseconds.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
from scipy import linalg

from maskgen.errors import MaskgenError

__all__ = ["frechet_distance", "frechet_distance_features", "fid_from_stats"]

# scipy >= 1.16 deprecates sqrtm's `disp` (and drops it later); the old default printed to stdout.
_SQRTM_DISP = inspect.signature(linalg.sqrtm).parameters.get("disp")
_SQRTM_OLD_API = _SQRTM_DISP is not None and _SQRTM_DISP.default is True


def _sqrtm(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if _SQRTM_OLD_API:
            return linalg.sqrtm(a, disp=False)[0]
        out = linalg.sqrtm(a)
        return out[0] if isinstance(out, tuple) else out


def _check(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise MaskgenError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise MaskgenError(f"covariances have shapes {sigma1.shape} and {sigma2.shape}, expected ({d}, {d})")
    return mu1, sigma1, mu2, sigma2


def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: sqrtm of the covariance product is singular; adding {eps} to the diagonals", RuntimeWarning, stacklevel=3)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag)
        if not np.all(imag <= 1e-3):
            raise MaskgenError(f"FID: sqrtm of the covariance product has an imaginary component {imag.max():.3g} (> 1e-3)")
        covmean = covmean.real
    return float(np.trace(covmean))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product_eig(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    s = _psd_sqrt(sigma1)
    m = s @ sigma2 @ s
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``method``: "sqrtm" (default, the reference evaluator's) or "eig" (faster, see module doc).
    """
    mu1, sigma1, mu2, sigma2 = _check(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    elif method == "eig":
        tr_covmean = _trace_sqrt_product_eig(sigma1, sigma2)
    else:
        raise MaskgenError(f"unknown Fréchet distance method {method!r} (use 'sqrtm' or 'eig')")
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_stats(a, b, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """Fréchet distance between two ``FeatureStats`` (checks they come from the same network)."""
    a.check_compatible(b)
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, eps=eps, method=method)


def frechet_distance_features(x: np.ndarray, y: np.ndarray, method: str = "auto") -> float:
    """Fréchet distance between the Gaussians fitted (np.cov, ddof=1) to feature sets x and y.

    ``method``: "auto" (the exact low-rank path when len(x) + len(y) <= D, else "sqrtm"),
    "lowrank", "sqrtm" or "eig".
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise MaskgenError(f"feature sets must be [N, D] with the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise MaskgenError("need at least 2 feature rows in each set")
    if method == "auto":
        method = "lowrank" if len(x) + len(y) <= x.shape[1] else "sqrtm"
    if method != "lowrank":
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False), method=method)
    # sigma_x = A^T A / (n-1), sigma_y = B^T B / (m-1) with A, B the centred rows. The non-zero
    # eigenvalues of sigma_x sigma_y are those of (A B^T)(A B^T)^T / ((n-1)(m-1)), so
    # tr sqrtm(sigma_x sigma_y) is the sum of the singular values of A B^T / sqrt((n-1)(m-1)).
    mx, my = x.mean(0), y.mean(0)
    a, b = x - mx, y - my
    sv = np.linalg.svd(a @ b.T, compute_uv=False)
    tr_covmean = sv.sum() / np.sqrt((len(x) - 1) * (len(y) - 1))
    diff = mx - my
    tr1 = (a * a).sum() / (len(x) - 1)
    tr2 = (b * b).sum() / (len(y) - 1)
    return float(diff.dot(diff) + tr1 + tr2 - 2 * tr_covmean)
