"""`maskgen encode` at ImageNet scale, on a generated folder of a few hundred images: loader
workers, both horizontal flips (MAR's cache), a resume byte-identical to an uninterrupted run,
a bad file named in one line, and training drawing one flip per example."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskgen.cli import main
from maskgen.data import TokenDataset, encode_dataset, open_dataset
from maskgen.data.images import load_image
from maskgen.errors import MaskgenError
from maskgen.tokenizers import VQConfig, VQTokenizer, load_tokenizer
from maskgen.training.trainer import StepBatches

N_PER_CLASS = 100
SIZE = 16
FILES = ("tokens.npy", "labels.npy", "meta.json")


@pytest.fixture(autouse=True)
def _one_thread():
    # a 16x16 batch's convolutions are smaller than the cost of syncing two threads on a busy machine
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """300 random RGB PNGs in 3 class folders, of sizes around 2x the encode size (so the
    ADM crop halves, resizes and cuts)."""
    root = tmp_path_factory.mktemp("imagenet-like")
    g = np.random.default_rng(0)
    for c in ("n01", "n02", "n03"):
        (root / c).mkdir()
        for i in range(N_PER_CLASS):
            h, w = g.integers(24, 40, size=2)
            Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / c / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tok = VQTokenizer(VQConfig(image_size=SIZE, channels=3, codebook_size=64, code_dim=4, downsample=4, width=8))
    folder = tmp_path_factory.mktemp("tok")
    tok.save(folder)
    return folder


def _encode(tok_dir: Path, folder: Path, out: Path, **kw) -> Path:
    data = open_dataset(f"folder:{folder}", image_size=SIZE, channels=3, check_files=False)
    return encode_dataset(load_tokenizer(tok_dir), data, out, **{"batch_size": 16, "chunk_size": 32, **kw})


def _bytes(cache: Path) -> dict[str, bytes]:
    return {name: (cache / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tok_dir, folder) -> Path:
    """The uninterrupted, in-process (0 workers) encode with flips every other run must equal."""
    return _encode(tok_dir, folder, tmp_path_factory.mktemp("ref") / "cache", flips=True)


def test_workers_give_the_same_cache_and_the_flip_is_the_mirrored_image(tmp_path, tok_dir, folder, reference):
    workers = _encode(tok_dir, folder, tmp_path / "w2", flips=True, num_workers=2)
    assert _bytes(workers) == _bytes(reference)

    tokens = np.load(reference / "tokens.npy", mmap_mode="r")
    assert tokens.shape == (300, 2, 4, 4)
    ds = TokenDataset(reference)
    assert ds.views == 2 and len(ds) == 300 and ds.labels.tolist() == [0] * 100 + [1] * 100 + [2] * 100
    files = sorted(folder.rglob("*.png"))
    crops = torch.stack([load_image(f, SIZE, 3) for f in files])
    # ADM's center crop by hand for one file: box-halve while the short side >= 2*16, bicubic
    # to a short side of 16, cut the middle 16x16
    img = Image.open(files[123]).convert("RGB")
    while min(img.size) >= 32:
        img = img.resize((img.size[0] // 2, img.size[1] // 2), Image.BOX)
    img = img.resize(tuple(round(x * SIZE / min(img.size)) for x in img.size), Image.BICUBIC)
    left, top = (img.size[0] - SIZE) // 2, (img.size[1] - SIZE) // 2
    by_hand = torch.from_numpy(np.asarray(img)[top : top + SIZE, left : left + SIZE].copy()).permute(2, 0, 1)
    assert torch.equal(crops[123], by_hand)

    tok = load_tokenizer(tok_dir)
    with torch.no_grad():  # in the encode's batches of 16, so no float op sees another batch shape
        plain = torch.cat([tok.encode(crops[i : i + 16]) for i in range(0, 300, 16)])
        mirrored = torch.cat([tok.encode(crops[i : i + 16].flip(-1)) for i in range(0, 300, 16)])
    assert np.array_equal(tokens[:, 0], plain.numpy()) and np.array_equal(tokens[:, 1], mirrored.numpy())
    assert not np.array_equal(tokens[:, 0], tokens[:, 1])
    # items and batches without views read the image as it is
    assert torch.equal(ds[123][0], plain[123].reshape(-1))
    got, _ = ds.batch(torch.tensor([0, 123, 299]), torch.tensor([1, 0, 1]))
    assert torch.equal(got, torch.stack([mirrored[0], plain[123], mirrored[299]]).reshape(3, -1))


def test_a_killed_encode_resumes_to_the_same_bytes(tmp_path, tok_dir, folder, reference):
    out = tmp_path / "cache"
    code = f"""
import os, signal, sys
from maskgen.data import encode_dataset, open_dataset
from maskgen.tokenizers import load_tokenizer
class Dies:  # the real tokenizer, killed (no clean-up at all) during its 11th call: batch 6
    def __init__(self, tok):
        self.tok, self.calls, self.codebook_size, self.sha256 = tok, 0, tok.codebook_size, tok.sha256
    def encode(self, images):
        self.calls += 1
        if self.calls == 11:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.tok.encode(images)
data = open_dataset({f"folder:{folder}"!r}, image_size={SIZE}, channels=3, check_files=False)
encode_dataset(Dies(load_tokenizer({str(tok_dir)!r})), data, {str(out)!r}, batch_size=16, chunk_size=32, flips=True)
"""
    src = str(Path(__file__).parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not out.exists()
    partial = tmp_path / ".cache.encoding" / "cache"
    assert '"done": 64' in (partial / "progress.json").read_text()  # two chunks of 32 recorded; batch 5 was not

    # other arguments: refused in one line, the partial cache kept
    with pytest.raises(MaskgenError, match=r"^an interrupted encode of .* \(64 of 300 images\) was run with other arguments "
                                           r"\(batch_size 16 -> 20\); rerun it with the same ones to resume, or pass --restart to discard it$"):
        _encode(tok_dir, folder, out, flips=True, batch_size=20)
    with pytest.raises(MaskgenError, match=r"other arguments \(flips True -> False\)"):
        _encode(tok_dir, folder, out)

    calls = []
    tok = load_tokenizer(tok_dir)
    encode = tok.encode
    tok.encode = lambda x: calls.append(len(x)) or encode(x)
    data = open_dataset(f"folder:{folder}", image_size=SIZE, channels=3, check_files=False)
    encode_dataset(tok, data, out, batch_size=16, chunk_size=32, flips=True, num_workers=2)
    assert sum(calls) == 2 * (300 - 64)  # it continued after the recorded chunks
    assert _bytes(out) == _bytes(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_a_bad_image_is_named_in_one_line_and_the_fixed_folder_resumes(tmp_path, tok_dir, folder, reference, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    bad = data / "n03" / "0050.png"  # image 250: after 7 chunks of 32
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    out = tmp_path / "cache"
    args = ["encode", "--tokenizer", str(tok_dir), "--data", f"folder:{data}", "--out", str(out), "--batch-size", "16",
            "--workers", "2", "--flips"]
    # CLI runs use the default chunk size (8192): nothing is recorded, so nothing is kept
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"maskgen: error: cannot decode image {bad}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

    with pytest.raises(MaskgenError, match=r"^cannot decode image .*n03/0050\.png: .*\(224 of 300 images are encoded and kept: the same command resumes after them\)$"):
        _encode(tok_dir, data, out, flips=True, num_workers=2)
    bad.write_bytes(good)
    _encode(tok_dir, data, out, flips=True)
    assert _bytes(out) == _bytes(reference)


def test_restart_discards_an_interrupted_encode(tmp_path, tok_dir, folder, reference):
    out = tmp_path / "cache"
    tok = load_tokenizer(tok_dir)
    encode = tok.encode
    tok.encode = lambda x: (_ for _ in ()).throw(KeyboardInterrupt) if len(calls) >= 5 else calls.append(1) or encode(x)
    calls: list[int] = []
    data = open_dataset(f"folder:{folder}", image_size=SIZE, channels=3, check_files=False)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(tok, data, out, batch_size=16, chunk_size=32)
    with pytest.raises(MaskgenError, match="flips False -> True"):
        _encode(tok_dir, folder, out, flips=True)
    _encode(tok_dir, folder, out, flips=True, restart=True)
    assert _bytes(out) == _bytes(reference)


def test_encode_options_refused_in_one_line(tmp_path, tok_dir, folder, capsys):
    base = ["encode", "--tokenizer", str(tok_dir), "--data", f"folder:{folder}", "--out", str(tmp_path / "c")]
    for extra, message in ((["--workers", "-1"], "--workers must be an integer >= 0, got -1"),
                           (["--image-size", "32"], "--image-size 32: the tokenizer in")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "c").exists()


def test_training_draws_one_flip_per_example(reference):
    """Each item of a training batch is one of its two stored flips, drawn per item and seeded
    by (seed, step): both occur, and a rerun draws the same."""
    ds = TokenDataset(reference)
    tokens = torch.from_numpy(np.load(reference / "tokens.npy").astype(np.int64)).reshape(300, 2, -1)

    def which(seed: int) -> list[int]:
        batches = StepBatches(ds, batch_size=64, seed=seed, rows=slice(None))
        chosen = []
        for step, (items, _) in batches.iterate(0, 3):
            idx = batches.indices(step)
            for item, i in zip(items, idx.tolist()):
                matches = [v for v in (0, 1) if torch.equal(item, tokens[i, v])]
                assert matches, "an item is neither stored flip"
                chosen.append(matches[0] if not torch.equal(tokens[i, 0], tokens[i, 1]) else -1)
        return chosen

    first = which(0)
    assert first == which(0) and first != which(1)
    assert 0.3 < sum(v == 1 for v in first) / sum(v >= 0 for v in first) < 0.7


def test_latent_cache_with_flips(tmp_path):
    """A KL tokenizer's cache with flips: [N, 2, h, w, d] float16, view 1 the mirrored image's
    latents, and batches read the view asked for."""
    from maskgen.data import ImageDataset, LatentDataset
    from maskgen.tokenizers import KLConfig, KLTokenizer

    torch.manual_seed(0)
    tok = KLTokenizer(KLConfig(image_size=16, channels=1, token_dim=4, width=8)).eval()
    images = torch.randint(0, 256, (20, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    encode_dataset(tok, ImageDataset(images, torch.arange(20) % 2, ["a", "b"]), tmp_path / "lat", batch_size=8, flips=True)
    raw = np.load(tmp_path / "lat" / "latents.npy")
    assert raw.dtype == np.float16 and raw.shape == (20, 2, 4, 4, 4)
    with torch.no_grad():  # in the encode's batches of 8
        plain = torch.cat([tok.encode(images[i : i + 8]) for i in range(0, 20, 8)])
        mirrored = torch.cat([tok.encode(images[i : i + 8].flip(-1)) for i in range(0, 20, 8)])
    assert np.array_equal(raw[:, 0].reshape(20, 16, 4), plain.half().numpy())
    assert np.array_equal(raw[:, 1].reshape(20, 16, 4), mirrored.half().numpy())
    ds = LatentDataset(tmp_path / "lat")
    got, labels = ds.batch(torch.tensor([3, 4]), torch.tensor([1, 0]))
    assert torch.equal(got, torch.stack([mirrored[3], plain[4]]).half().float()) and labels.tolist() == [1, 0]
