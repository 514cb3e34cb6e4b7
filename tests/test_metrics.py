"""Metrics on synthetic inputs with known answers (fast; no feature network weights needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskgen.errors import MaskgenError
from maskgen.metrics import (
    FeatureStats,
    compute_stats,
    extract,
    fid_from_stats,
    frechet_distance,
    frechet_distance_features,
    inception_score,
    load_stats,
    save_stats,
)
from maskgen.metrics import frechet as frechet_mod


def random_spd(rng, d, n=None):
    a = rng.normal(size=(n or 3 * d, d))
    return np.cov(a, rowvar=False)


# --- Fréchet distance -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sqrtm", "eig"])
def test_frechet_diagonal_closed_form(method):
    rng = np.random.default_rng(0)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a), method=method) == pytest.approx(0, abs=1e-9)


def test_frechet_methods_agree_on_general_covariances():
    rng = np.random.default_rng(1)
    d = 48
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.1
    s1, s2 = random_spd(rng, d), random_spd(rng, d) * 1.5
    ref = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2, method="eig") == pytest.approx(ref, rel=1e-9)
    # symmetric in its arguments
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ref, rel=1e-9)


def test_frechet_from_features_lowrank_matches_reference_path():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 40))
    y = rng.normal(size=(15, 40)) * 1.3 + 0.2
    ref = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    for method in ("lowrank", "auto", "sqrtm", "eig"):
        assert frechet_distance_features(x, y, method=method) == pytest.approx(ref, rel=1e-6), method
    # more rows than dimensions: auto takes the sqrtm path
    x2, y2 = rng.normal(size=(60, 8)), rng.normal(size=(70, 8))
    ref2 = frechet_distance(x2.mean(0), np.cov(x2, rowvar=False), y2.mean(0), np.cov(y2, rowvar=False))
    assert frechet_distance_features(x2, y2) == pytest.approx(ref2, rel=1e-12)
    assert frechet_distance_features(x2, y2, method="lowrank") == pytest.approx(ref2, rel=1e-9)


def test_frechet_singular_covariances_and_retry(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 16)), rng.normal(size=(6, 16)) + 0.3  # rank 4 and 5 covariances in 16-d
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    exact = frechet_distance_features(x, y, method="lowrank")
    assert np.isfinite(frechet_distance(x.mean(0), s1, y.mean(0), s2))
    assert frechet_distance(x.mean(0), s1, y.mean(0), s2) == pytest.approx(exact, rel=1e-6)

    # force the reference's retry path: the first sqrtm "fails" (non-finite), the retry adds eps*I
    calls = []
    real_sqrtm = frechet_mod._sqrtm

    def flaky(a):
        calls.append(a.copy())
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(frechet_mod, "_sqrtm", flaky)
    with pytest.warns(RuntimeWarning, match="singular"):
        got = frechet_distance(x.mean(0), s1, y.mean(0), s2, eps=1e-6)
    assert len(calls) == 2
    offset = np.eye(16) * 1e-6
    np.testing.assert_allclose(calls[1], (s1 + offset) @ (s2 + offset))
    d = x.mean(0) - y.mean(0)
    with_offset = d @ d + np.trace(s1) + np.trace(s2) - 2 * frechet_mod._trace_sqrt_product_eig(s1 + offset, s2 + offset)
    assert got == pytest.approx(with_offset, rel=1e-9)
    assert got == pytest.approx(exact, abs=0.05)  # eps shifts the singular directions by O(sqrt(eps))


def test_frechet_imaginary_component_fails():
    # not covariances (negative variance): sqrtm has an imaginary diagonal of 1
    with pytest.raises(MaskgenError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-1.0, 1.0]))


def test_frechet_shape_errors():
    with pytest.raises(MaskgenError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(MaskgenError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), method="nope")


# --- statistics -------------------------------------------------------------------------------


class RowwiseNet(torch.nn.Module):
    """A deterministic fake FeatureNetwork whose features depend on each image alone."""

    name = "fake-rowwise"
    sha256 = "0" * 64
    num_classes = None

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        x = images.float().flatten(1)[:, :6]
        return torch.cat([x, x.pow(2) / 255.0, x.sin()], 1), None


def test_stats_match_numpy_and_do_not_depend_on_batch_size():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(53, 1, 4, 4), dtype=np.uint8)
    net = RowwiseNet()
    stats = []
    for bs in (1, 7, 53, 100):
        f, logits = extract(net, images, batch_size=bs, progress=False)
        assert f.dtype == np.float64 and logits is None
        stats.append(compute_stats(f, network=net.name, network_sha256=net.sha256))
    for s in stats[1:]:
        np.testing.assert_array_equal(s.mu, stats[0].mu)
        np.testing.assert_array_equal(s.sigma, stats[0].sigma)
    f = extract(net, images, batch_size=10, progress=False)[0]
    np.testing.assert_allclose(stats[0].mu, np.mean(f, axis=0), rtol=0, atol=0)
    np.testing.assert_allclose(stats[0].sigma, np.cov(f, rowvar=False, ddof=1), rtol=0, atol=0)
    assert stats[0].count == 53 and stats[0].mu.dtype == np.float64 and stats[0].sigma.dtype == np.float64
    assert stats[0].dim == 18


def test_stats_subset_is_deterministic():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(300, 4)).astype(np.float32).astype(np.float64)
    a, b = compute_stats(f, pr_subset=100, seed=0), compute_stats(f, pr_subset=100, seed=0)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.features.shape == (100, 4) and a.features.dtype == np.float32
    c = compute_stats(f, pr_subset=100, seed=1)
    assert not np.array_equal(a.features, c.features)
    # rows are a subset of the input, in input order, converted losslessly
    rows = {tuple(r) for r in f.astype(np.float32)}
    assert all(tuple(r) in rows for r in a.features)
    full = compute_stats(f, pr_subset=1000)
    np.testing.assert_array_equal(full.features, f.astype(np.float32))
    assert compute_stats(f, pr_subset=None).features is None
    with pytest.raises(MaskgenError):
        compute_stats(f[:1])
    with pytest.raises(MaskgenError):
        compute_stats(np.full((3, 2), np.nan))


def test_stats_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    f = rng.normal(size=(40, 5))
    s = compute_stats(f, pr_subset=10, network="inception-pool3", network_sha256="ab" * 32, data="fashion-mnist train 40")
    path = save_stats(tmp_path / "ref", s)
    assert path.name == "ref.npz"
    t = load_stats(path)
    np.testing.assert_array_equal(t.mu, s.mu)
    np.testing.assert_array_equal(t.sigma, s.sigma)
    np.testing.assert_array_equal(t.features, s.features)
    assert (t.count, t.network, t.network_sha256, t.data) == (40, "inception-pool3", "ab" * 32, "fashion-mnist train 40")
    # readable without pickle by plain numpy
    with np.load(path, allow_pickle=False) as z:
        assert str(z["network"][()]) == "inception-pool3"
    # no subset
    s2 = compute_stats(f, pr_subset=0)
    assert load_stats(save_stats(tmp_path / "b.npz", s2)).features is None
    assert fid_from_stats(s, t) == pytest.approx(0, abs=1e-9)


def test_stats_load_errors(tmp_path):
    with pytest.raises(MaskgenError, match="missing"):
        load_stats(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file at all")
    with pytest.raises(MaskgenError):
        load_stats(bad)
    good = save_stats(tmp_path / "good.npz", compute_stats(np.random.default_rng(0).normal(size=(10, 3))))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MaskgenError):
        load_stats(truncated)
    npy = tmp_path / "array.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(MaskgenError, match="not an .npz"):
        load_stats(npy)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, arr_0=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(MaskgenError, match="not a maskgen"):
        load_stats(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("maskgen-feature-stats-v1"), mu=np.array([{"a": 1}], dtype=object))
    with pytest.raises(MaskgenError):
        load_stats(pickled)
    inconsistent = tmp_path / "inconsistent.npz"
    np.savez(inconsistent, format=np.array("maskgen-feature-stats-v1"), mu=np.zeros(3), sigma=np.eye(4), count=np.array(5),
             network=np.array(""), network_sha256=np.array(""), data=np.array(""))  # fmt: skip
    with pytest.raises(MaskgenError, match="corrupt"):
        load_stats(inconsistent)


def test_stats_from_different_networks_are_refused():
    f = np.random.default_rng(0).normal(size=(10, 3))
    a = compute_stats(f, network="inception-pool3", network_sha256="a" * 64)
    b = compute_stats(f, network="maskgen-classifier", network_sha256="b" * 64)
    with pytest.raises(MaskgenError, match="different networks"):
        fid_from_stats(a, b)
    c = FeatureStats(a.mu, a.sigma, a.count, network="inception-pool3", network_sha256="c" * 64)
    with pytest.raises(MaskgenError, match="different weights"):
        fid_from_stats(a, c)


# --- Inception Score --------------------------------------------------------------------------


def test_inception_score_known_values():
    k = 10
    onehot = np.eye(k)[np.arange(1000) % k]
    assert inception_score(onehot, from_logits=False)[0] == pytest.approx(k, rel=1e-12)
    assert inception_score(onehot * 60.0)[0] == pytest.approx(k, rel=1e-6)  # logits of near one-hot softmax
    same = np.tile(np.random.default_rng(0).dirichlet(np.ones(k)), (500, 1))
    assert inception_score(same, from_logits=False) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert inception_score(np.zeros((50, k)))[0] == pytest.approx(1.0)  # uniform predictions
    for mode in ("evaluator", "torch-fidelity"):
        assert inception_score(onehot, from_logits=False, splits_mode=mode)[0] == pytest.approx(k)


def test_inception_score_splits():
    k = 4
    # first 5000 rows all class 0 (IS 1), next 5000 uniform one-hot (IS k)
    p = np.concatenate([np.eye(k)[np.zeros(5000, int)], np.eye(k)[np.arange(5000) % k]])
    assert inception_score(p, from_logits=False) == pytest.approx(((1 + k) / 2, (k - 1) / 2))
    assert inception_score(p, from_logits=False, splits_mode="torch-fidelity", num_splits=10) == pytest.approx(((1 + k) / 2, (k - 1) / 2))
    # evaluator: a short last chunk is its own split
    mean, _ = inception_score(p[:7000], from_logits=False)
    assert mean == pytest.approx((1 + k) / 2)
    # torch-fidelity with its shuffle: the halves mix, every split is close to the pooled score
    shuffled, _ = inception_score(p, from_logits=False, splits_mode="torch-fidelity", shuffle=True)
    pooled, _ = inception_score(p, from_logits=False, split_size=len(p))
    assert shuffled == pytest.approx(pooled, rel=0.05) and shuffled != pytest.approx((1 + k) / 2, rel=0.05)


def test_inception_score_matches_direct_formula():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(300, 20)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    py = p.mean(0)
    expected = math.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), 1)))
    assert inception_score(logits)[0] == pytest.approx(expected, rel=1e-10)
    assert inception_score(p, from_logits=False)[0] == pytest.approx(expected, rel=1e-10)
    with pytest.raises(MaskgenError):
        inception_score(logits, from_logits=False)  # not probabilities
    with pytest.raises(MaskgenError):
        inception_score(logits, splits_mode="other")


# --- precision / recall -----------------------------------------------------------------------
