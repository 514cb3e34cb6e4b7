"""Data package: bundled set, IDX files, image folders, token caches, --data specs."""

from __future__ import annotations

import gzip
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from maskgen.data import (
    ImageDataset,
    ImageFolderDataset,
    TokenDataset,
    encode_dataset,
    fit_to_size,
    is_token_spec,
    open_dataset,
    read_idx,
)
from maskgen.errors import MaskgenError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- embedded set


def test_embedded_is_small_balanced_and_padded_exactly():
    ref = resources.files("maskgen.data").joinpath("fashion_mnist_subset.npz")
    with resources.as_file(ref) as path:
        assert path.stat().st_size <= 5 * 1024 * 1024
        with np.load(path, allow_pickle=False) as z:
            raw = z["images"]
            assert raw.dtype == np.uint8 and raw.shape[1:] == (28, 28)
            assert z["labels"].dtype == np.uint8 and len(z["class_names"]) == 10

    ds = open_dataset("embedded")
    assert isinstance(ds, ImageDataset)
    assert (ds.num_classes, ds.channels, ds.image_size) == (10, 1, 32)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    counts = torch.bincount(ds.labels, minlength=10)
    assert len(ds) >= 5000 and (counts == counts[0]).all()

    # 28 -> 32 pads with zeros and keeps every original pixel
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(raw))
    border = ds.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0

    img, label = ds[3]
    assert img.dtype == torch.uint8 and img.shape == (1, 32, 32)
    assert label.dtype == torch.int64 and label.ndim == 0
    imgs, labels = ds.batch(torch.tensor([3, 7]))
    assert torch.equal(imgs[0], img) and labels.dtype == torch.int64 and labels[0] == label

    rgb = open_dataset("embedded", image_size=28, channels=3)
    assert rgb.images.shape[1:] == (3, 28, 28)
    assert torch.equal(rgb.images[:, 1], torch.from_numpy(raw))


def test_fit_to_size_resizes_other_sizes():
    flat = torch.full((2, 3, 28, 28), 77, dtype=torch.uint8)
    out = fit_to_size(flat, 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8 and (out == 77).all()
    assert fit_to_size(flat, 28) is flat


# ---------------------------------------------------------------- IDX


def _write_idx(path: Path, arr: np.ndarray, code: int = 0x08, gz: bool = False) -> None:
    raw = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    _write_idx(tmp_path / "x", images, gz=gz)
    out = read_idx(tmp_path / "x")
    assert out.dtype == np.uint8 and np.array_equal(out, images)

    ints = np.arange(-3, 3, dtype=">i4").reshape(2, 3)
    _write_idx(tmp_path / "i", ints, code=0x0C, gz=gz)
    assert np.array_equal(read_idx(tmp_path / "i"), ints.astype(np.int32))


def test_read_idx_rejects_truncated_and_malformed(tmp_path):
    images = np.zeros((5, 4, 4), dtype=np.uint8)
    _write_idx(tmp_path / "full", images)
    data = (tmp_path / "full").read_bytes()
    (tmp_path / "short").write_bytes(data[:-3])
    (tmp_path / "short.gz").write_bytes(gzip.compress(data)[:-10])
    (tmp_path / "magic").write_bytes(b"\x01\x02" + data[2:])
    (tmp_path / "header").write_bytes(data[:9])
    for name in ("short", "short.gz", "magic", "header"):
        with pytest.raises(MaskgenError):
            read_idx(tmp_path / name)
    with pytest.raises(MaskgenError, match="missing"):
        read_idx(tmp_path / "absent")


def _idx_folder(folder: Path, n: int = 12, prefix: str = "train") -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(1).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, gz=True)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return images


def test_fashion_mnist_spec_reads_idx_from_any_folder(tmp_path):
    images = _idx_folder(tmp_path / "fm")
    _idx_folder(tmp_path / "fm", n=4, prefix="t10k")
    ds = open_dataset(f"fashion-mnist:{tmp_path / 'fm'}")
    assert len(ds) == 12 and ds.class_names[9] == "Ankle boot" and ds.image_size == 32
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(images))
    assert len(open_dataset(f"fashion-mnist:{tmp_path / 'fm'}", split="test")) == 4
    plain = open_dataset(str(tmp_path / "fm"))  # a plain folder with IDX files
    assert isinstance(plain, ImageDataset) and torch.equal(plain.images, ds.images)
    with pytest.raises(MaskgenError):
        open_dataset(f"fashion-mnist:{tmp_path / 'fm'}", split="valid")
    with pytest.raises(MaskgenError):
        open_dataset(f"fashion-mnist:{tmp_path}")  # folder without IDX files


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_files():
    ds = open_dataset("fashion-mnist", split="test")
    assert len(ds) == 10000 and ds.num_classes == 10 and ds.images.shape[1:] == (1, 32, 32)
    assert (torch.bincount(ds.labels) == 1000).all()


# ---------------------------------------------------------------- image folders


def _image_folder(root: Path) -> Path:
    (root / "dog").mkdir(parents=True)
    (root / "cat").mkdir()
    # 30x10 image: black sides, white 10x10 center -> center crop is all white
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = 255
    Image.fromarray(wide).save(root / "cat" / "wide.png")
    Image.fromarray(np.full((20, 20), 100, dtype=np.uint8), "L").save(root / "cat" / "grey.PNG")
    Image.fromarray(np.full((8, 8, 4), 200, dtype=np.uint8), "RGBA").save(root / "dog" / "a.png")
    Image.fromarray(np.full((12, 12, 3), 50, dtype=np.uint8)).save(root / "dog" / "b.jpg")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_dataset(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    ds = ImageFolderDataset(root, image_size=10, channels=1)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 4
    assert (ds.num_classes, ds.channels, ds.image_size) == (2, 1, 10)
    assert ds.labels.tolist() == [0, 0, 1, 1]
    img, label = ds[[p.name for p in ds.files].index("wide.png")]
    assert img.shape == (1, 10, 10) and img.dtype == torch.uint8 and label.dtype == torch.int64
    assert (img == 255).all()  # center-cropped, not squashed

    rgb = open_dataset(f"folder:{root}", image_size=16)
    assert isinstance(rgb, ImageFolderDataset) and rgb.channels == 3
    grey_idx = [p.name for p in rgb.files].index("grey.PNG")
    grey, _ = rgb[grey_idx]
    assert grey.shape == (3, 16, 16) and (grey == 100).all()
    imgs, labels = rgb.batch(torch.tensor([0, 3]))
    assert imgs.shape == (2, 3, 16, 16) and labels.tolist() == [0, 1]
    assert isinstance(open_dataset(str(root)), ImageFolderDataset)  # plain folder


def test_image_folder_errors(tmp_path):
    with pytest.raises(MaskgenError, match="no class subfolders"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(MaskgenError, match="no image files"):
        open_dataset(f"folder:{tmp_path}")
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MaskgenError, match="broken.png"):  # named when the folder opens
        ImageFolderDataset(tmp_path)


# ---------------------------------------------------------------- token caches


class FakeTokenizer:
    """Deterministic 'tokenizer': 8x8 average pool of channel 0, quantised to 16 codes."""

    codebook_size = 16
    sha256 = "f" * 64

    def __init__(self, fail_after: int | None = None, watch: Path | None = None):
        self.calls = 0
        self.fail_after = fail_after
        self.watch = watch

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.uint8 and not torch.is_grad_enabled()
        if self.watch is not None:
            assert not self.watch.exists(), "cache visible before encoding finished"
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("killed")
        pooled = torch.nn.functional.avg_pool2d(images[:, :1].float(), 8)[:, 0]
        return (pooled // 16).long()


def _small_images(n: int = 37) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 32, 32), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 3, ["a", "b", "c"])


def test_token_cache_round_trip(tmp_path):
    data = _small_images()
    out = tmp_path / "cache"
    tok = FakeTokenizer(watch=out)
    assert encode_dataset(tok, data, out, batch_size=8) == out
    assert tok.calls == 5
    with torch.no_grad():
        expected = FakeTokenizer().encode(data.images)

    raw = np.load(out / "tokens.npy", mmap_mode="r")
    assert isinstance(raw, np.memmap) and raw.dtype == np.int16 and raw.shape == (37, 4, 4)
    assert np.array_equal(raw, expected.numpy())

    ds = open_dataset(f"tokens:{out}")
    assert isinstance(ds, TokenDataset)
    assert (ds.codebook_size, ds.grid, ds.num_classes, ds.class_names) == (16, (4, 4), 3, ["a", "b", "c"])
    assert ds.tokenizer_sha256 == "f" * 64 and len(ds) == 37
    toks, label = ds[5]
    assert toks.dtype == torch.int64 and toks.shape == (16,) and torch.equal(toks, expected[5].reshape(-1))
    assert label.dtype == torch.int64 and label == 5 % 3
    bt, bl = ds.batch(torch.tensor([9, 2]))
    assert bt.shape == (2, 16) and torch.equal(bt[1], expected[2].reshape(-1)) and bl.tolist() == [0, 2]
    assert is_token_spec(f"tokens:{out}") and is_token_spec(str(out)) and not is_token_spec("embedded")
    assert isinstance(open_dataset(str(out)), TokenDataset)

    # DataLoader path (dataset without .batch) gives the same cache
    out2 = tmp_path / "cache2"
    encode_dataset(FakeTokenizer(), Subset(data, range(len(data))), out2, batch_size=10)
    assert np.array_equal(np.load(out2 / "tokens.npy"), raw)

    mem = TokenDataset.from_tensors(expected, data.labels, 16, data.class_names)
    assert torch.equal(mem[5][0], toks) and mem.grid == (4, 4) and torch.equal(mem.batch(torch.tensor([9, 2]))[0], bt)


def test_token_cache_never_half_written(tmp_path):
    data = _small_images()
    out = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        encode_dataset(FakeTokenizer(fail_after=2), data, out, batch_size=8)
    assert not out.exists() and list(tmp_path.iterdir()) == []

    encode_dataset(FakeTokenizer(), data, out, batch_size=8)
    before = np.load(out / "tokens.npy")
    with pytest.raises(RuntimeError):  # a failed re-encode keeps the old cache intact
        encode_dataset(FakeTokenizer(fail_after=1), data, out, batch_size=8)
    assert np.array_equal(TokenDataset(out).to_tensors()[0].numpy(), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    with pytest.raises(MaskgenError, match="refusing"):
        encode_dataset(FakeTokenizer(), data, tmp_path / "mine")


def test_a_killed_encode_leaves_scratch_the_next_run_removes(tmp_path):
    """SIGKILL mid-encode: no cleanup code runs, so the scratch folder stays, out does not
    appear, and the next encode of the same out deletes the scratch (and the randomly named
    temporaries earlier versions left) under its lock."""
    import os
    import subprocess
    import sys

    out = tmp_path / "cache"
    code = f"""
import os, signal, torch
from maskgen.data import ImageDataset, encode_dataset
class Dies:
    codebook_size = 16
    calls = 0
    def encode(self, images):
        self.calls += 1
        if self.calls == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return torch.zeros(images.shape[0], 4, 4, dtype=torch.long)
data = ImageDataset(torch.zeros(20, 1, 32, 32, dtype=torch.uint8), torch.zeros(20, dtype=torch.long), ["a"])
encode_dataset(Dies(), data, {str(out)!r}, batch_size=8)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert not out.exists() and (tmp_path / ".cache.encoding").is_dir()
    (tmp_path / ".cache.tmp-abc123").mkdir()  # what a killed encode of an earlier version left
    (tmp_path / ".other.tmp-abc123").mkdir()  # another output's: not this run's to delete
    encode_dataset(FakeTokenizer(), _small_images(), out, batch_size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-abc123", "cache"]
    assert len(TokenDataset(out)) == 37


def test_corrupt_token_cache(tmp_path):
    out = tmp_path / "cache"
    encode_dataset(FakeTokenizer(), _small_images(), out)
    tokens = (out / "tokens.npy").read_bytes()
    (out / "tokens.npy").write_bytes(tokens[:-50])
    with pytest.raises(MaskgenError):
        TokenDataset(out)
    (out / "tokens.npy").write_bytes(tokens)
    (out / "meta.json").write_text("{not json")
    with pytest.raises(MaskgenError):
        TokenDataset(out)
    (out / "meta.json").unlink()
    with pytest.raises(MaskgenError):
        open_dataset(f"tokens:{out}")


# ---------------------------------------------------------------- specs


def test_unknown_spec_and_missing_path():
    with pytest.raises(MaskgenError, match="unknown data spec"):
        open_dataset("imagenet")
    with pytest.raises(MaskgenError, match="unknown data spec"):
        open_dataset("cifar:/data")
    for spec in ("./no/such/dir", "folder:/no/such/dir", "tokens:/no/such/dir", "fashion-mnist:/no/such/dir"):
        with pytest.raises(MaskgenError, match="does not exist"):
            open_dataset(spec)
    with pytest.raises(MaskgenError):
        open_dataset("embedded", split="test")


@pytest.mark.parametrize("damage", ["truncated", "not an image"])
def test_a_bad_image_is_named_when_the_folder_opens(tmp_path, damage):
    """Issue: a corrupt PNG was found only when its batch was drawn, which on a real dataset
    can be hours in. Opening the folder now checks every file and names the bad one."""
    from PIL import Image

    from maskgen.data import open_dataset

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    bad = tmp_path / "b" / "2.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"hello, not a png")
    with pytest.raises(MaskgenError, match=r"cannot decode image .*b/2\.png"):
        open_dataset(f"folder:{tmp_path}", image_size=8)
