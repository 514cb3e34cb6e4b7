"""Precision/recall, KID and the TF1 resize of the metrics: against brute force, their definitions and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskgen.errors import MaskgenError
from maskgen.metrics import kernel_inception_distance, precision_recall, tf1_resize_bilinear
from maskgen.metrics.kid import _mmd2_unbiased


def brute_precision_recall(real, fake, k=3):
    def radii(pts):
        out = []
        for i, a in enumerate(pts):
            d = sorted(math.dist(a, b) for j, b in enumerate(pts) if j != i)
            out.append(d[k - 1])
        return out

    rr, fr = radii(real), radii(fake)
    precision = np.mean([any(math.dist(f, r) <= rad for r, rad in zip(real, rr)) for f in fake])
    recall = np.mean([any(math.dist(r, f) <= rad for f, rad in zip(fake, fr)) for r in real])
    return precision, recall


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(40, 5))
    fake = rng.normal(size=(35, 5)) * 0.8 + 0.6
    expected = brute_precision_recall(real.tolist(), fake.tolist())
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real, fake) == pytest.approx(expected, abs=1e-12)
    assert precision_recall(real, fake, batch_size=7) == pytest.approx(expected, abs=1e-12)
    assert precision_recall(torch.tensor(real), torch.tensor(fake), dtype=torch.float32) == pytest.approx(expected, abs=0.03)


def test_precision_recall_boundary_and_tight_cluster_count():
    # real points on a line at 0..4: radius of 0 is 3 (neighbours 1, 2, 3)
    real = np.arange(5.0)[:, None]
    on_boundary = np.array([[-3.0]])
    outside = np.array([[-3.5]])
    fake_cloud = np.array([[10.0], [11.0], [12.0], [13.0]])
    assert precision_recall(real, np.concatenate([on_boundary, fake_cloud]))[0] == pytest.approx(0.2)  # <= counts
    assert precision_recall(real, np.concatenate([outside, fake_cloud]))[0] == 0.0
    # k+1 identical real points: radius 0, and a sample exactly on them still counts
    cluster = np.zeros((4, 3))
    fake = np.array([[0.0, 0.0, 0.0], [1e-3, 0, 0], [5, 5, 5], [6, 6, 6]])
    precision, recall = precision_recall(cluster, fake)
    assert precision == pytest.approx(0.25)
    # the sample manifold: radius of the sample at the origin is its 3rd neighbour distance (> 0), covering the cluster
    assert recall == 1.0
    assert brute_precision_recall(cluster.tolist(), fake.tolist()) == (precision, recall)


def test_precision_recall_identical_sets_and_errors():
    x = np.random.default_rng(8).normal(size=(30, 4))
    assert precision_recall(x, x) == (1.0, 1.0)
    with pytest.raises(MaskgenError):
        precision_recall(x[:3], x)  # not more than k points
    with pytest.raises(MaskgenError):
        precision_recall(x, x[:, :3])


# --- KID --------------------------------------------------------------------------------------


def test_kid_unbiased_estimator_matches_definition():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 1

    def k(a, b):
        return (np.dot(a, b) / 3 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert _mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_same_vs_shifted_distribution():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(500, 16))
    shifted = rng.normal(size=(400, 16)) + 0.5
    same_mean, same_std = kernel_inception_distance(a, b, num_subsets=10, subset_size=150)
    shift_mean, _ = kernel_inception_distance(a, shifted, num_subsets=10, subset_size=150)
    assert abs(same_mean) < 0.02 and same_std > 0
    assert shift_mean > 0.2 and shift_mean > 20 * abs(same_mean)
    # deterministic for a seed, subset size clipped to the smaller set
    assert kernel_inception_distance(a, b, num_subsets=2, seed=1) == kernel_inception_distance(a, b, num_subsets=2, seed=1)
    with pytest.raises(MaskgenError):
        kernel_inception_distance(a, b[:, :3])


# --- TF1 bilinear resize ----------------------------------------------------------------------


def tf1_reference(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Per-pixel loop over TF's legacy resize_bilinear kernel (float32 throughout)."""
    h, w = img.shape
    sy, sx = np.float32(h) / np.float32(oh), np.float32(w) / np.float32(ow)
    out = np.zeros((oh, ow), np.float32)
    for i in range(oh):
        fy = np.float32(i) * sy
        y0, y1, ly = int(np.floor(fy)), min(int(np.ceil(fy)), h - 1), np.float32(fy - np.floor(fy))
        for j in range(ow):
            fx = np.float32(j) * sx
            x0, x1, lx = int(np.floor(fx)), min(int(np.ceil(fx)), w - 1), np.float32(fx - np.floor(fx))
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * lx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * lx
            out[i, j] = top + (bottom - top) * ly
    return out


def test_tf1_resize_hand_computed():
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0]])[None, None]
    expected_up = torch.tensor([[0, 2, 4, 4], [4, 6, 8, 8], [8, 10, 12, 12], [8, 10, 12, 12]], dtype=torch.float32)
    assert torch.equal(tf1_resize_bilinear(x, 4)[0, 0], expected_up)
    y = torch.tensor([[0.0, 1, 2], [10, 11, 12], [20, 21, 22]])[None, None]
    assert torch.equal(tf1_resize_bilinear(y, (2, 2))[0, 0], torch.tensor([[0.0, 1.5], [15.0, 16.5]]))
    # uint8 input is converted to float32; same size is a copy
    u = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)
    assert tf1_resize_bilinear(u, 2).dtype == torch.float32
    assert torch.equal(tf1_resize_bilinear(u, 2), u.float())


@pytest.mark.parametrize("shape,size", [((5, 7), (11, 3)), ((28, 28), (299, 299)), ((9, 4), (4, 9))])
def test_tf1_resize_matches_per_pixel_reference(shape, size):
    img = np.random.default_rng(11).uniform(0, 255, size=shape).astype(np.float32)
    out = tf1_resize_bilinear(torch.from_numpy(img)[None, None].repeat(2, 3, 1, 1), size)
    assert out.shape == (2, 3, *size)
    ref = tf1_reference(img, *size)
    np.testing.assert_allclose(out[1, 2].numpy(), ref, rtol=0, atol=1e-4)
    # differs from torch's half-pixel bilinear
    half = torch.nn.functional.interpolate(torch.from_numpy(img)[None, None], size=size, mode="bilinear", align_corners=False)
    assert not torch.allclose(half[0, 0], out[0, 0], atol=1e-2)
