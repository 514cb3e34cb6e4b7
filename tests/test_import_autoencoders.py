"""Imported autoencoders: taming-transformers' VQGAN and MAR's KL VAE, against the original code.

The fixtures (tests/fixtures/make_autoencoder_fixtures.py) are tiny random-weight models of
the original classes saved in the original formats, with the original code's outputs.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maskgen.convert.mar_vae import convert_mar_vae
from maskgen.convert.taming_vqgan import convert_taming_vqgan
from maskgen.errors import MaskgenError
from maskgen.tokenizers import (
    KLTokenizer,
    LDMKLConfig,
    LDMKLTokenizer,
    TamingVQConfig,
    TamingVQTokenizer,
    load_tokenizer,
    to_uint8,
    tokenizer_kind,
)

FIXTURES = Path(__file__).parent / "fixtures"
TAMING, MAR = FIXTURES / "taming_vqgan_tiny.ckpt", FIXTURES / "mar_vae_tiny.ckpt"
TOL = dict(rtol=1e-5, atol=1e-5)


def unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


@pytest.fixture(scope="module")
def taming():
    return convert_taming_vqgan(TAMING, image_size=32), load_file(str(FIXTURES / "taming_vqgan_tiny_outputs.safetensors"))


@pytest.fixture(scope="module")
def mar():
    return convert_mar_vae(MAR, image_size=32), load_file(str(FIXTURES / "mar_vae_tiny_outputs.safetensors"))


def test_taming_vqgan_reproduces_the_original(taming):
    tok, ref = taming
    c = tok.config
    assert (c.ch, c.ch_mult, c.num_res_blocks, c.z_channels, c.embed_dim, c.codebook_size) == (32, (1, 1), 1, 8, 8, 32)
    assert c.encoder_attn_resolutions == c.decoder_attn_resolutions == (16,) and tok.grid == (16, 16)
    ids = tok.encode(ref["images"])
    assert ids.shape == (2, 16, 16) and torch.equal(ids.view(2, -1), ref["ids"])
    with torch.no_grad():
        assert torch.allclose(tok.latents(unit(ref["images"])), ref["latents"], **TOL)
        assert torch.allclose(tok.decode_codes(ref["codes"].view(2, 16, 16)), ref["pixels"], **TOL)
    # uint8 decode: the original's pixels clamped and rounded (a rounding tie may flip by one)
    images = tok.decode(ref["codes"])
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 32, 32)
    assert (images.int() - to_uint8(ref["pixels"]).int()).abs().max() <= 1
    assert torch.equal(tok.decode(ref["codes"].view(2, 16, 16)), images)
    with pytest.raises(MaskgenError, match=r"token ids must lie in \[0, 32\)"):
        tok.decode(torch.full((1, 256), 32))


def test_mar_vae_reproduces_the_original(mar):
    tok, ref = mar
    c = tok.config
    assert (c.ch, c.ch_mult, c.z_channels, tok.token_dim, tok.scale) == (32, (2, 1), 4, 4, 0.2325)
    assert c.encoder_attn_resolutions == (16,) and c.decoder_attn_resolutions == () and tok.grid == (16, 16)
    assert isinstance(tok, KLTokenizer)
    with torch.no_grad():
        q = tok.posterior(unit(ref["images"]))
        assert torch.allclose(q.mean, ref["mean"], **TOL) and torch.allclose(q.logvar, ref["logvar"], **TOL)
        assert torch.allclose(tok.decode_latents(ref["latents"]), ref["pixels"], **TOL)
    # encode: posterior mean * 0.2325, as [B, N, d]; decode divides it back out
    latents = tok.encode(ref["images"])
    assert torch.allclose(latents, ref["mean"].flatten(2).transpose(1, 2) * 0.2325, **TOL)
    scaled = ref["latents"].flatten(2).transpose(1, 2) * 0.2325
    assert (tok.decode(scaled).int() - to_uint8(ref["pixels"]).int()).abs().max() <= 1
    # a posterior sample comes from the generator passed, never the global RNG
    draw = [tok.encode(ref["images"], sample=True, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(draw[0], draw[1]) and not torch.allclose(draw[0], latents)
    with pytest.raises(MaskgenError, match="needs a torch.Generator"):
        tok.encode(ref["images"], sample=True)


def one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def edited(tmp_path: Path, source: Path, key: str, edit) -> Path:
    """A copy of a fixture with its state dict (under ``key``) edited, in a bare dict."""
    from maskgen.convert.taming_vqgan import LIGHTNING_ALLOWED
    from maskgen.convert.torch_file import read_torch_file

    state = dict(read_torch_file(source, "fixture", LIGHTNING_ALLOWED)[key])
    edit(state)
    path = tmp_path / source.name
    torch.save({key: state}, path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.__setitem__("decoder.extra.weight", torch.zeros(1)), "unexpected keys: decoder.extra.weight"),
        (lambda s: s.pop("decoder.up.0.block.1.conv2.bias"), "missing keys: decoder.up.0.block.1.conv2.bias"),
        (lambda s: s.__setitem__("decoder.conv_out.weight", torch.zeros(3, 64, 1, 1)), r"shape mismatch: decoder.conv_out.weight \(3, 64, 1, 1\) != \(3, 64, 3, 3\)"),
        (lambda s: s.pop("encoder.conv_in.weight"), "not a VQGAN/LDM autoencoder state dict: it has no encoder.conv_in.weight"),
    ],
)
def test_mar_vae_keys_are_strict(tmp_path, edit, message):
    with pytest.raises(MaskgenError, match=message) as e:
        convert_mar_vae(edited(tmp_path, MAR, "model", edit), image_size=32)
    one_line(e)


def test_taming_vqgan_keys_are_strict_beyond_the_loss(tmp_path):
    # loss.* is dropped (the fixture holds one); any other stray key is refused
    path = edited(tmp_path, TAMING, "state_dict", lambda s: s.__setitem__("lossy.weight", torch.zeros(1)))
    with pytest.raises(MaskgenError, match="unexpected keys: lossy.weight") as e:
        convert_taming_vqgan(path, image_size=32)
    one_line(e)
    path = edited(tmp_path, TAMING, "state_dict", lambda s: s.__setitem__("quantize.embedding.weight", torch.zeros(32, 9)))
    with pytest.raises(MaskgenError, match=r"does not match TamingVQTokenizer \(reading taming VQGAN checkpoint .*\): shape mismatch: .*quant_conv.weight \(8, 8, 1, 1\) != \(9, 8, 1, 1\)") as e:
        convert_taming_vqgan(path, image_size=32)
    one_line(e)
    with pytest.raises(MaskgenError, match="has no 'state_dict' entry .found: model.") as e:
        convert_taming_vqgan(MAR)
    one_line(e)


def touch(path):
    """What a malicious pickle would run on load; the refusal must come first."""
    Path(path).write_text("ran")


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return touch, (self.path,)


@pytest.mark.parametrize("convert, key", [(convert_mar_vae, "model"), (convert_taming_vqgan, "state_dict")])
def test_a_pickled_object_off_the_allowlist_is_refused_unrun(tmp_path, convert, key):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.ckpt"
    torch.save({key: {}, "payload": Payload(str(marker))}, path)
    with pytest.raises(MaskgenError, match=r"refusing to read .*it pickles .*touch, which is not a tensor or on the allowlist") as e:
        convert(path)
    one_line(e)
    assert not marker.exists()
    # Lightning's callback class is allowed only in a Lightning checkpoint, not in MAR's
    from argparse import Namespace

    torch.save({key: {}, "args": Namespace(a=1)}, path)
    with pytest.raises(MaskgenError, match="it pickles argparse.Namespace"):
        convert(path)


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(MaskgenError, match="MAR VAE checkpoint file does not exist") as e:
        convert_mar_vae(tmp_path / "none.ckpt")
    one_line(e)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(MaskgenError, match="cannot read taming VQGAN checkpoint .* as a PyTorch checkpoint: Unsupported operand") as e:
        convert_taming_vqgan(tmp_path / "junk.ckpt")
    one_line(e)


@pytest.mark.parametrize("which", ["taming", "mar"])
def test_save_and_load_round_trip(tmp_path, request, which):
    tok, ref = request.getfixturevalue(which)
    tok.save(tmp_path)
    back = load_tokenizer(tmp_path)
    assert type(back) is type(tok) and back.config == tok.config and back.sha256
    assert tokenizer_kind(tmp_path) == {"taming": "taming_vq", "mar": "ldm_kl"}[which]
    assert torch.equal(back.encode(ref["images"]), tok.encode(ref["images"]))
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), tok.state_dict().values()))


def test_model_folders_with_imported_tokenizers_generate(tmp_path, taming, mar):
    from conftest import tiny_generator

    from maskgen.models.continuous import ContinuousConfig, ContinuousGenerator
    from maskgen.pipelines import MaskGen

    taming[0].save(tmp_path / "vq")
    tiny_generator(codebook_size=32, grid=(16, 16), num_classes=3).save(tmp_path / "vq")
    model = MaskGen.load(tmp_path / "vq")
    assert isinstance(model.tokenizer, TamingVQTokenizer)
    images, _ = model.generate(torch.tensor([0, 2]), model.sampler(steps=2), seed=0, progress=False)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8

    mar[0].save(tmp_path / "kl")
    torch.manual_seed(0)
    config = ContinuousConfig(token_dim=4, grid=(16, 16), num_classes=3, width=32, depth=2, heads=2, head_width=32, head_depth=1)
    ContinuousGenerator(config).save(tmp_path / "kl")
    model = MaskGen.load(tmp_path / "kl")
    assert isinstance(model.tokenizer, LDMKLTokenizer) and model.continuous
    sampler = model.sampler(sampler="ancestral", steps=2, cfg=1.0, head_sampler="ddpm", head_steps=2)
    images, _ = model.generate(torch.tensor([1]), sampler, seed=0, progress=False)
    assert images.shape == (1, 3, 32, 32)


def test_published_shapes():
    """The defaults are the published models: parameter counts and the keys the checkpoints hold."""
    with torch.device("meta"):
        vq, kl = TamingVQTokenizer(), LDMKLTokenizer()
    assert sum(p.numel() for p in vq.parameters()) == 72_141_699 and vq.grid == (16, 16)
    assert sum(p.numel() for p in kl.parameters()) == 66_456_019 and kl.grid == (16, 16) and kl.scale == 0.2325
    vq_keys, kl_keys = vq.state_dict(), kl.state_dict()
    assert tuple(vq_keys["quantize.embedding.weight"].shape) == (1024, 256)
    assert tuple(vq_keys["post_quant_conv.weight"].shape) == (256, 256, 1, 1)
    for key in ("encoder.down.4.attn.1.proj_out.weight", "decoder.up.4.attn.2.q.weight", "encoder.down.2.block.0.nin_shortcut.weight",
                "encoder.down.3.downsample.conv.weight", "decoder.up.1.upsample.conv.weight", "decoder.mid.attn_1.k.bias"):
        assert key in vq_keys, key
    assert "encoder.down.4.attn.0.q.weight" in kl_keys and not any(k.startswith("decoder.up.4.attn") for k in kl_keys)
    assert tuple(kl_keys["quant_conv.weight"].shape) == (32, 32, 1, 1) and tuple(kl_keys["post_quant_conv.weight"].shape) == (16, 16, 1, 1)


@pytest.mark.parametrize(
    "config, message",
    [
        (lambda: TamingVQConfig(image_size=32, ch_mult=(1, 1), encoder_attn_resolutions=(8,)), r"encoder_attn_resolutions \[8\] not among the levels' resolutions \[32, 16\]"),
        (lambda: LDMKLConfig(ch=48), "multiples of 32"),
        (lambda: LDMKLConfig(image_size=40), "does not divide image_size 40"),
        (lambda: LDMKLConfig.from_dict({"ch_mult": "12"}), "ch_mult must be a list of integers"),
        (lambda: TamingVQConfig(codebook_size=1), "codebook_size must be an integer >= 2"),
        (lambda: LDMKLConfig(scale=0.0), "scale must be > 0"),
    ],
)
def test_bad_shapes_are_one_line(config, message):
    with pytest.raises(MaskgenError, match=message) as e:
        config()
    one_line(e)
