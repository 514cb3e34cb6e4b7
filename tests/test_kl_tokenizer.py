"""Tests of the KL autoencoder tokenizer, its objective, its scale and its latent cache.

Expected values are derived here, independently of the code under test: the KL term from
its closed form for hand-picked moments, the scale from numpy's std of the latents, the cache
from float16 casts of what ``encode`` returns.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from maskgen.training.checkpoints import StepCheckpoints
from maskgen.checkpoint import file_sha256, save_tensors
from maskgen.cli import main
from maskgen.data import ImageDataset, LatentDataset, TokenDataset, cache_kind, encode_dataset, is_token_cache, open_dataset
from maskgen.errors import MaskgenError
from maskgen.training.tokenizer import KLObjective
from maskgen.tokenizers import DiagonalGaussian, KLConfig, KLTokenizer, VQConfig, VQTokenizer, load_tokenizer, measure_scale, to_unit, tokenizer_kind
from maskgen.training.context import StepContext
from maskgen.training.trainer import TrainConfig

TINY = dict(image_size=16, channels=1, token_dim=4, downsample=4, width=8, num_res_blocks=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0, **kw) -> KLTokenizer:
    torch.manual_seed(seed)  # only nn.Module weight init reads the global RNG
    return KLTokenizer(KLConfig(**{**TINY, **kw})).eval()


def images(n: int, seed: int = 0, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)


def test_kl_matches_the_closed_form_and_logvar_is_clamped() -> None:
    # mean (1, -2), variance (1, 4): KL = 0.5 * [(1 + 1 - 1 - 0) + (4 + 4 - 1 - ln 4)] = 4 - ln 2
    q = DiagonalGaussian.from_moments(torch.tensor([1.0, -2.0, 0.0, math.log(4.0)]).view(1, 4, 1, 1))
    assert q.kl().shape == (1,) and q.kl().item() == pytest.approx(4.0 - math.log(2.0), rel=1e-6)
    assert torch.allclose(q.sample(torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)).flatten(), torch.tensor([2.0, 0.0]))
    wild = DiagonalGaussian.from_moments(torch.tensor([0.0, 100.0]).view(1, 2, 1, 1))
    assert wild.logvar.item() == 20.0 and math.isfinite(wild.kl().item())
    assert DiagonalGaussian.from_moments(torch.tensor([0.0, -100.0]).view(1, 2, 1, 1)).logvar.item() == -30.0


def test_objective_is_reconstruction_plus_weighted_kl_per_pixel() -> None:
    tok = tiny(kl_weight=0.5)
    x = images(4)
    ctx = StepContext(step=0, rng=torch.Generator().manual_seed(3), rows=slice(0, 4), global_batch=4)
    loss, metrics = KLObjective()(tok, (x, torch.zeros(4)), ctx)
    # the same noise, drawn here: [global batch, d, h, w] from the step's generator
    noise = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        q = tok.posterior(to_unit(x))
        mse = torch.mean((tok.decoder(q.mean + torch.exp(0.5 * q.logvar) * noise) - to_unit(x)) ** 2)
        kl = 0.5 * (q.mean**2 + q.logvar.exp() - 1 - q.logvar).sum(dim=(1, 2, 3)).mean()
    assert metrics["mse"] == pytest.approx(mse.item(), rel=1e-5)
    assert loss.item() == pytest.approx(mse.item() + 0.5 * kl.item() / (16 * 16), rel=1e-5)
    assert metrics["kl"] == pytest.approx(kl.item() / (4 * 4 * 4), rel=1e-5)


def test_encode_decode_shapes_scale_and_seeded_sampling() -> None:
    tok = tiny()
    x = images(3)
    z = tok.encode(x)
    assert tok.grid == (4, 4) and tok.num_tokens == 16 and tok.token_dim == 4
    assert z.shape == (3, 16, 4) and z.dtype == torch.float32
    out = tok.decode(z)
    assert out.shape == (3, 1, 16, 16) and out.dtype == torch.uint8
    # the posterior mean in row-major grid order, times the scale
    mean = tok.posterior(to_unit(x)).mean
    assert torch.equal(z, mean.permute(0, 2, 3, 1).reshape(3, 16, 4))
    scaled = KLTokenizer(KLConfig(**{**TINY, "scale": 2.5}))
    scaled.load_state_dict(tok.state_dict())
    scaled.eval()
    assert torch.allclose(scaled.encode(x), 2.5 * z) and torch.equal(scaled.decode(scaled.encode(x)), out)
    # sampling: needs a generator, reproducible from it, and leaves the global RNG alone
    state = torch.random.get_rng_state()
    a = tok.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    b = tok.encode(x, sample=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, z)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(MaskgenError, match="Generator"):
        tok.encode(x, sample=True)
    with pytest.raises(MaskgenError, match=r"\[B,16,4\]"):
        tok.decode(z[:, :, :3])
    with pytest.raises(MaskgenError, match="uint8"):
        tok.encode(x.float())


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(kl_weight=float("nan")), "kl_weight must be a finite number"),
        (dict(kl_weight=-1e-3), "kl_weight must be >= 0"),
        (dict(scale=0.0), "scale must be > 0"),
        (dict(token_dim=0), "token_dim must be a positive integer"),
        (dict(downsample=3), "power of 2"),
        (dict(width=12), "multiple of 8"),
    ],
)
def test_invalid_config(kw: dict, msg: str) -> None:
    with pytest.raises(MaskgenError, match=msg):
        KLConfig(**{**TINY, **kw})


def test_measure_scale_is_one_over_numpy_std() -> None:
    tok = tiny()
    data = ImageDataset(images(37, seed=2), torch.zeros(37, dtype=torch.long), ["a"])
    latents = tok.encode(data.images).numpy().astype(np.float64)  # scale 1.0: the raw means
    # batches of 10 do not divide 37: the batch-wise merge must give the one-pass std (to
    # float32 precision: the encoder's convolutions round differently at other batch sizes)
    assert measure_scale(tok, data, batch_size=10) == pytest.approx(1.0 / np.std(latents), rel=1e-6)


def test_save_load_round_trip_strict_and_kinds_refused(tmp_path) -> None:
    tok = tiny()
    tok.config.scale = 0.73
    tok.save(tmp_path / "kl")
    loaded = KLTokenizer.load(tmp_path / "kl")
    assert loaded.config == tok.config and loaded.config.scale == 0.73 and not loaded.training
    assert loaded.sha256 is not None and tokenizer_kind(tmp_path / "kl") == "kl"
    assert isinstance(load_tokenizer(tmp_path / "kl"), KLTokenizer)
    x = images(5, seed=1)
    assert torch.equal(loaded.encode(x), tok.encode(x)) and torch.equal(loaded.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    with pytest.raises(MaskgenError, match="is a KL tokenizer .continuous latents.; this needs a VQ tokenizer"):
        VQTokenizer.load(tmp_path / "kl")
    VQTokenizer(VQConfig(image_size=16, codebook_size=8, code_dim=4, width=8)).save(tmp_path / "vq")
    assert tokenizer_kind(tmp_path / "vq") == "vq" and isinstance(load_tokenizer(tmp_path / "vq"), VQTokenizer)
    with pytest.raises(MaskgenError, match="holds a vq_tokenizer, not a kl_tokenizer"):
        KLTokenizer.load(tmp_path / "vq")
    # one extra tensor, with a JSON that agrees with the file: strict keys refuse it
    weights = tmp_path / "kl" / "tokenizer.safetensors"
    save_tensors(weights, {**tok.state_dict(), "extra": torch.zeros(1)})
    record = json.loads((tmp_path / "kl" / "tokenizer.json").read_text())
    (tmp_path / "kl" / "tokenizer.json").write_text(json.dumps({**record, "sha256": file_sha256(weights)}))
    with pytest.raises(MaskgenError, match="unexpected keys: extra"):
        KLTokenizer.load(tmp_path / "kl")


def test_latent_cache_round_trip_is_bit_exact_in_float16(tmp_path) -> None:
    tok = tiny()
    tok.config.scale = 1.7
    data = ImageDataset(images(23, seed=4), torch.arange(23) % 3, ["a", "b", "c"])
    out = tmp_path / "latents"
    assert encode_dataset(tok, data, out, batch_size=8) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latents"]  # no scratch folder left
    # what the cache must hold, to the bit: encode's output for the same batches, in float16
    expected = torch.cat([tok.encode(data.images[i : i + 8]) for i in range(0, 23, 8)]).half()
    raw = np.load(out / "latents.npy", mmap_mode="r")
    assert isinstance(raw, np.memmap) and raw.dtype == np.float16 and raw.shape == (23, 4, 4, 4)
    assert np.array_equal(raw.reshape(23, 16, 4).view(np.uint16), expected.numpy().view(np.uint16))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "latents" and meta["scale"] == 1.7 and meta["token_dim"] == 4 and meta["posterior"] == "mean"
    assert is_token_cache(out) and cache_kind(out) == "latents"
    for spec in (f"tokens:{out}", str(out)):
        ds = open_dataset(spec)
        assert isinstance(ds, LatentDataset) and not isinstance(ds, TokenDataset)
    assert (len(ds), ds.grid, ds.seq_len, ds.token_dim, ds.scale, ds.num_classes) == (23, (4, 4), 16, 4, 1.7, 3)
    item, label = ds[5]
    assert item.dtype == torch.float32 and item.shape == (16, 4) and torch.equal(item, expected[5].float()) and label == 5 % 3
    batch, labels = ds.batch(torch.tensor([9, 2]))
    assert batch.shape == (2, 16, 4) and torch.equal(batch, expected[[9, 2]].float()) and labels.tolist() == [0, 2]
    assert torch.equal(tok.decode(batch), tok.decode(expected[[9, 2]].float()))
    mem = LatentDataset.from_tensors(ds.to_tensors()[0], ds.labels, ds.class_names, scale=1.7)
    assert torch.equal(mem.batch(torch.tensor([9, 2]))[0], batch)
    # a generator of discrete tokens refuses the latent cache in one line
    from maskgen.training import token_dataset

    with pytest.raises(MaskgenError, match="holds the latents of a KL tokenizer"):
        token_dataset(f"tokens:{out}", VQTokenizer(VQConfig(image_size=16, codebook_size=8, code_dim=4, width=8)))


def test_train_measures_and_records_the_scale_then_cli_encodes(tmp_path, capsys) -> None:
    from maskgen.training import train_tokenizer

    out = tmp_path / "tok"
    train = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup=0, log_every=1, save_every=30, device="cpu")
    tok, metrics = train_tokenizer("embedded", out, KLConfig(**TINY), train, progress=False)
    losses = [h["loss"] for h in StepCheckpoints(out).record()["history"]]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    # the scale is 1 / std of the training latents, recorded in the checkpoint and the metrics
    data = open_dataset("embedded", image_size=16, channels=1)
    raw = torch.cat([tok.encode(data.images[i : i + 2000]) for i in range(0, len(data), 2000)]) / tok.config.scale
    assert tok.config.scale == pytest.approx(1.0 / np.std(raw.numpy().astype(np.float64)), rel=1e-6)
    assert KLTokenizer.load(out).config.scale == tok.config.scale == metrics["scale"]
    assert json.loads((out / "metrics.json").read_text())["kind"] == "kl" and "usage" not in metrics
    # the CLI encodes with it into a latent cache
    assert main(["encode", "--tokenizer", str(out), "--out", str(tmp_path / "cache")]) == 0
    assert "latent cache written to" in capsys.readouterr().out
    assert isinstance(open_dataset(str(tmp_path / "cache")), LatentDataset)


def test_cli_trains_a_kl_tokenizer(tmp_path, capsys) -> None:
    args = ["train-tokenizer", "--kind", "kl", "--out", str(tmp_path / "t"), "--steps", "2", "--batch-size", "8",
            "--width", "8", "--token-dim", "4", "--kl-weight", "0.01", "--downsample", "8"]
    assert main(args) == 0
    assert "latent scale" in capsys.readouterr().out
    cfg = KLTokenizer.load(tmp_path / "t").config
    assert (cfg.token_dim, cfg.kl_weight, cfg.downsample, cfg.width) == (4, 0.01, 8, 8) and cfg.scale != 1.0
    # resuming the run as the other kind is a changed setting, refused before any work
    assert main(["train-tokenizer", "--out", str(tmp_path / "t"), "--steps", "2", "--batch-size", "8", "--width", "8", "--downsample", "8", "--resume"]) == 2
    assert "kind kl -> vq" in capsys.readouterr().err


def test_python_api_refuses_a_preset_scale(tmp_path) -> None:
    from maskgen.training import train_tokenizer

    with pytest.raises(MaskgenError, match="scale is measured after training"):
        train_tokenizer("embedded", tmp_path / "t", KLConfig(**{**TINY, "scale": 0.5}), TrainConfig(steps=1, batch_size=8))
