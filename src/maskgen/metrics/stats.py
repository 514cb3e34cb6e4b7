"""Feature statistics: what FID compares, and what a reference set is cached as.

``compute_stats`` takes the features of a whole set (``extract`` returns them as float64) and
computes the mean and the covariance exactly as the reference evaluator does: float64,
``np.cov(features, rowvar=False)`` (ddof=1). Features are computed per image, so the result
does not depend on the batch size the features were extracted with.

A deterministic subset of the raw rows (default up to 10k, chosen with ``seed``) is kept for
precision/recall and KID, which need samples rather than moments. It is stored as float32:
exact for features produced by a float32 network (Inception's are), and half the file size.

``save_stats`` / ``load_stats`` use a plain ``.npz`` readable with ``allow_pickle=False``;
strings are 0-d unicode arrays, and a ``format`` entry marks the file as ours.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import save_arrays
from ..errors import MaskgenError

__all__ = ["FeatureStats", "compute_stats", "save_stats", "load_stats", "STATS_FORMAT"]

STATS_FORMAT = "maskgen-feature-stats-v1"


@dataclass
class FeatureStats:
    mu: np.ndarray  # float64 [D]
    sigma: np.ndarray  # float64 [D, D]
    count: int  # number of feature rows the moments were computed from
    features: np.ndarray | None = None  # float32 [M, D] subset of the rows (precision/recall, KID)
    network: str = ""  # feature network name, e.g. "inception-pool3"
    network_sha256: str = ""  # hash of the network's weights file
    data: str = ""  # free-form description of the image set

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def check_compatible(self, other: "FeatureStats") -> None:
        """MaskgenError unless both were computed with the same network and dimension."""
        if self.dim != other.dim:
            raise MaskgenError(f"feature statistics differ in dimension: {self.dim} vs {other.dim}")
        if self.network and other.network and self.network != other.network:
            raise MaskgenError(f"feature statistics come from different networks: {self.network!r} vs {other.network!r}")
        if self.network_sha256 and other.network_sha256 and self.network_sha256 != other.network_sha256:
            raise MaskgenError(
                f"feature statistics come from different weights of {self.network or 'the network'}: "
                f"sha256 {self.network_sha256[:12]}... vs {other.network_sha256[:12]}..."
            )


def subset_indices(n: int, size: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a deterministic subset of ``size`` rows out of ``n`` (all if n <= size)."""
    if size is None or size <= 0:
        return np.zeros(0, dtype=np.int64)
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)).astype(np.int64)


def compute_stats(
    features: np.ndarray,
    pr_subset: int | None = 10000,
    seed: int = 0,
    *,
    network: str = "",
    network_sha256: str | None = "",
    data: str = "",
) -> FeatureStats:
    """Mean and covariance (float64, ddof=1) of features [N, D], plus a row subset.

    ``pr_subset``: how many rows to keep for precision/recall (None or 0: none).
    """
    f = np.asarray(features)
    if f.ndim != 2:
        raise MaskgenError(f"features must be a 2-D array [N, D], got shape {f.shape}")
    if len(f) < 2:
        raise MaskgenError(f"need at least 2 feature rows for a covariance, got {len(f)}")
    f64 = f.astype(np.float64, copy=False)
    if not np.isfinite(f64).all():
        raise MaskgenError("features contain NaN or infinite values")
    mu = np.mean(f64, axis=0)
    sigma = np.cov(f64, rowvar=False)
    idx = subset_indices(len(f), pr_subset, seed)
    sub = f64[idx].astype(np.float32) if len(idx) else None
    return FeatureStats(mu, sigma, int(len(f)), sub, network, network_sha256 or "", data)


def stats_path(path: str | Path) -> Path:
    """Where ``save_stats(path, ...)`` writes: ``path`` with ``.npz`` added if missing, so a
    caller can check and report the file that is really written."""
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save_stats(path: str | Path, stats: FeatureStats) -> Path:
    """Write ``stats`` to an ``.npz`` (the suffix is added if missing); returns the path."""
    path = stats_path(path)
    arrays = dict(
        format=np.array(STATS_FORMAT),
        mu=np.asarray(stats.mu, dtype=np.float64),
        sigma=np.asarray(stats.sigma, dtype=np.float64),
        count=np.array(int(stats.count), dtype=np.int64),
        network=np.array(str(stats.network)),
        network_sha256=np.array(str(stats.network_sha256 or "")),
        data=np.array(str(stats.data)),
    )
    if stats.features is not None:
        arrays["features"] = np.asarray(stats.features, dtype=np.float32)
    return save_arrays(path, arrays)


def _string(z, key: str, path: Path) -> str:
    a = z[key]
    if a.ndim != 0 or a.dtype.kind != "U":
        raise MaskgenError(f"corrupt feature statistics {path}: {key!r} is not a string")
    return str(a[()])


def _read_entries(z, path: Path):
    keys = set(z.files)
    if "format" not in keys:
        raise MaskgenError(f"{path} is not a maskgen feature statistics file (no 'format' entry)")
    fmt = _string(z, "format", path)
    if fmt != STATS_FORMAT:
        raise MaskgenError(f"{path} has format {fmt!r}, expected {STATS_FORMAT!r}")
    missing = {"mu", "sigma", "count", "network", "network_sha256", "data"} - keys
    if missing:
        raise MaskgenError(f"corrupt feature statistics {path}: missing {', '.join(sorted(missing))}")
    features = z["features"] if "features" in keys else None
    strings = {k: _string(z, k, path) for k in ("network", "network_sha256", "data")}
    return z["mu"], z["sigma"], z["count"], features, strings


def load_stats(path: str | Path) -> FeatureStats:
    """Read a file written by ``save_stats``; MaskgenError if missing, corrupt or not ours."""
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"missing feature statistics file: {path}")
    try:  # our own handle: np.load leaks its file when the zip is truncated
        with open(path, "rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise MaskgenError(f"{path} is not a maskgen feature statistics file (not an .npz archive)")
            with z:
                mu, sigma, count, features, strings = _read_entries(z, path)
    except MaskgenError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        # numpy's own word for a pickle ("load it unsafely using allow_pickle") is advice maskgen never takes
        why = "it is not an .npz of plain arrays (pickled or other data is never loaded)" if "pickle" in str(e) else str(e)
        raise MaskgenError(f"cannot read feature statistics {path}: {why}; make statistics with maskgen ref-stats") from None
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or mu.dtype != np.float64 or sigma.shape != (d, d) or sigma.dtype != np.float64:
        raise MaskgenError(f"corrupt feature statistics {path}: mu {mu.shape} / sigma {sigma.shape} do not match")
    if count.ndim != 0 or count.dtype.kind not in "iu" or int(count) < 2:
        raise MaskgenError(f"corrupt feature statistics {path}: bad count")
    if features is not None and (features.ndim != 2 or features.shape[1] != d):
        raise MaskgenError(f"corrupt feature statistics {path}: feature subset has shape {features.shape}, expected [M, {d}]")
    return FeatureStats(mu, sigma, int(count), features, **strings)
