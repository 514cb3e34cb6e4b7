"""Published generators imported as maskgen models: valeoai/Maskgit-pytorch v1 (Besnier & Chen
2023) into ``MaskedTransformer``, MAR (Li et al. 2024) and eMIGM (You et al. 2025) into
``ContinuousGenerator``.

The fixtures are tiny random-weight models of the original classes, saved in the original
formats together with the original code's outputs (``fixtures/make_generator_fixtures.py``).
"""

import argparse
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maskgen.convert.mar import convert_mar
from maskgen.convert.valeoai_v1 import convert_valeoai_v1
from maskgen.errors import MaskgenError
from maskgen.models.continuous import ContinuousConfig, ContinuousGenerator
from maskgen.models.diffusion_head import CosineNoise, variational_bound_bits
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.sampling.continuous import ContinuousDenoiser
from maskgen.sampling.head_sampler import HeadSampling
from maskgen.sampling.spec import AncestralSpec, CFGSpec, ConfidenceSpec, SamplerSpec

from conftest import BareGenerator

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "valeoai_v1_tiny.pth"
CONTINUOUS = ["mar", "emigm"]


def v1_model(path=V1) -> MaskedTransformer:
    return convert_valeoai_v1(path, codebook_size=16, heads=2)


def outputs(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / f"{name}_outputs.safetensors"))


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def read(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, weights_only=True)


def resave(tmp_path, source: Path, edit) -> Path:
    """A copy of a fixture checkpoint with ``edit`` applied to its loaded dict."""
    data = read(source)
    edit(data)
    path = tmp_path / source.name
    torch.save(data, path)
    return path


# -- valeoai v1 ---------------------------------------------------------------------------


def test_v1_logits_equal_the_original():
    f = outputs("valeoai_v1_tiny")
    m = v1_model()
    with torch.no_grad():
        out = m.run(f["tokens"], f["labels"], hidden=True)
    # theirs has K + 1 columns ([MASK] last); maskgen never predicts the mask id, so its column is
    # rebuilt from maskgen's final states, the [MASK] embedding and the file's bias column, and
    # every column is compared (float32, a different order of operations: within 1e-5)
    assert out.logits.shape == (4, 16, 16)
    assert f["labels"][2] == 5  # the unconditional branch ("no class") is among the rows
    bias = torch.load(V1, weights_only=True)["model_state_dict"]["bias"]
    h = out.hidden[:, m.token_slots]
    mask_column = h @ m.tok_emb.weight[16] + bias[:16, 16]
    full = torch.cat([out.logits, mask_column[..., None]], -1)
    torch.testing.assert_close(full, f["logits"], atol=1e-5, rtol=1e-6)


def test_v1_layout_is_a_configuration():
    c = v1_model().config
    assert (c.class_position, c.output, c.stems, c.stem_eps, c.norm_eps, c.uncond) == ("last", "tied", True, 1e-12, 1e-5, "null")
    assert (c.codebook_size, c.num_classes, c.grid, c.width, c.depth, c.mlp_ratio) == (16, 5, (4, 4), 32, 2, 2.0)


def test_v1_ids_map_without_permutation():
    table = torch.load(V1, weights_only=True)["model_state_dict"]["tok_emb.weight"]
    m = v1_model()
    assert torch.equal(m.tok_emb.weight, table[:17])  # codes 0..15, [MASK] 16
    assert torch.equal(m.cls_emb.weight, table[17:])  # classes 0..4 at 17 + y, "no class" last


def test_v1_prefixes_are_stripped(tmp_path):
    def wrap(d):
        d["model_state_dict"] = {"module._orig_mod." + k: v for k, v in d["model_state_dict"].items()}

    f = outputs("valeoai_v1_tiny")
    with torch.no_grad():
        assert torch.equal(convert_valeoai_v1(resave(tmp_path, V1, wrap), 16, 2)(f["tokens"], f["labels"]), v1_model()(f["tokens"], f["labels"]))


def test_v1_strict_keys_in_one_line(tmp_path):
    def spoil(d):
        s = d["model_state_dict"]
        del s["last_layer.4.bias"]
        s["extra.weight"] = torch.zeros(2)
        s["first_layer.2.weight"] = torch.zeros(32, 31)

    with pytest.raises(MaskgenError) as e:
        convert_valeoai_v1(resave(tmp_path, V1, spoil), 16, 2)
    message = one_line(e)
    assert "missing keys: last_layer.4.bias" in message and "extra.weight" in message and "first_layer.2.weight (32, 31) != (32, 32)" in message


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(codebook_size=30, heads=2), "too few for 30 codes"),
        (dict(codebook_size=16), "cannot tell the attention heads .* width 32.*give the head count: --heads N"),
        (dict(codebook_size=16, heads=3), "not divisible by heads 3"),
    ],
)
def test_v1_configuration_refusals(kwargs, match):
    with pytest.raises(MaskgenError, match=match):
        convert_valeoai_v1(V1, **kwargs)


def test_v1_without_its_state_dict_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(MaskgenError, match="no 'model_state_dict' entry"):
        convert_valeoai_v1(path, 16, 2)


# -- MAR and eMIGM ------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONTINUOUS)
def test_mar_z_and_head_equal_the_original(name):
    f = outputs(f"{name}_tiny")
    m = convert_mar(FIXTURES / f"{name}_tiny.pth", heads=2)
    assert f["labels"][2] == m.config.num_classes  # an unconditional row (fake_latent) among them
    with torch.no_grad():
        z = m.condition(f["latents"], f["mask"], f["labels"])
        blank = m.condition(torch.full_like(f["latents"], float("nan")), torch.ones_like(f["mask"]), f["labels"])
        head = m.head(f["head_x"], f["head_t"].float(), f["head_z"])
    torch.testing.assert_close(z, f["z"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(blank, f["z_blank"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head, f["head_out"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_mar_loss_terms_equal_the_original(name):
    """MAR's hybrid loss on given (x0, t, noise): MSE of eps plus the VB term in bits."""
    f = outputs(f"{name}_tiny")
    m = convert_mar(FIXTURES / f"{name}_tiny.pth", heads=2)
    noise, t, x0 = CosineNoise(), f["head_t"], f["loss_x0"]
    x_t = noise.add_noise(x0, f["loss_noise"], t)
    with torch.no_grad():
        eps, v = m.head(x_t, t.float(), f["head_z"]).split(4, dim=-1)
    mse = ((f["loss_noise"] - eps) ** 2).mean(-1)
    vb = variational_bound_bits(noise, x0, x_t, t, eps, v)
    torch.testing.assert_close(mse, f["loss_mse"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vb, f["loss_vb"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(mse + vb, f["loss"], atol=1e-5, rtol=1e-4)


def test_mar_and_emigm_layouts():
    mar, emigm = (convert_mar(FIXTURES / f"{n}_tiny.pth", heads=2).config for n in CONTINUOUS)
    assert (mar.arch, mar.buffer_size, mar.norm_eps, mar.uncond, mar.depth, mar.decoder_depth) == ("mae", 4, 1e-6, "null", 2, 2)
    assert (mar.token_dim, mar.grid, mar.num_classes, mar.head_width, mar.head_depth) == (4, (4, 4), 5, 32, 1)
    assert emigm.uncond == "mask"  # use_unsup_cfg: the mask token is the unconditional class input


def test_emigm_runs_with_the_mask_token_its_loader_keeps():
    ema = torch.load(FIXTURES / "emigm_tiny.pth", weights_only=True)["model_ema"]
    m = convert_mar(FIXTURES / "emigm_tiny.pth", heads=2)
    assert not torch.equal(ema["fake_latent"], ema["mask_token"])  # its EMA copy stores them apart
    assert torch.equal(m.mask_emb, ema["mask_token"][0])


def test_mar_raw_weights_and_missing_ema(tmp_path):
    raw = read(FIXTURES / "mar_tiny.pth")["model"]
    m = convert_mar(FIXTURES / "mar_tiny.pth", use_ema=False, heads=2)
    assert torch.equal(m.token_proj.weight, raw["z_proj.weight"]) and torch.equal(m.cls_emb.weight[-1], raw["fake_latent"][0])
    with pytest.raises(MaskgenError) as e:
        convert_mar(FIXTURES / "emigm_tiny.pth", use_ema=False, heads=2)
    assert "has no 'model' weights; pass use_ema=True" in one_line(e)
    path = resave(tmp_path, FIXTURES / "mar_tiny.pth", lambda d: d.update(model_ema=None))
    with pytest.raises(MaskgenError, match="no 'model_ema' weights; pass use_ema=False"):
        convert_mar(path, heads=2)


def edit_args(**kw):
    def edit(d):
        for k, v in kw.items():
            setattr(d["args"], k, v)

    return edit


@pytest.mark.parametrize(
    "edit, heads, match",
    [
        (edit_args(buffer_size=64), 2, "args say buffer_size=64 but its weights imply 4"),
        (edit_args(use_unsup_cfg=True), 2, "use_unsup_cfg=True but its weights imply False"),
        (edit_args(model="mar_base"), None, "name the preset mar_base but its width is 32"),
        (edit_args(model="mar_base"), 4, "heads=4 but its args name the preset mar_base with 12 heads"),
        (edit_args(use_mae=False), 2, "use_mae=False"),
        (edit_args(patch_size=2), 2, "patch_size 2"),
        (lambda d: d.pop("args"), None, "cannot tell the attention heads .* give the head count: --heads N"),
        (lambda d: d["model_ema"].pop("diffloss.net.cond_embed.bias"), 2, "missing keys: diffloss.net.cond_embed.bias"),
        (lambda d: d["model_ema"].update({"encoder_blocks.0.ls1.gamma": torch.ones(32)}), 2, "no place in maskgen's model: encoder_blocks.0.ls1.gamma"),
    ],
)
def test_mar_refusals_in_one_line(tmp_path, edit, heads, match):
    with pytest.raises(MaskgenError, match=match) as e:
        convert_mar(resave(tmp_path, FIXTURES / "mar_tiny.pth", edit), heads=heads)
    one_line(e)


def test_mar_prefixes_and_no_args(tmp_path):
    def edit(d):
        d.pop("args")
        d["model_ema"] = {"module." + k: v for k, v in d["model_ema"].items()}

    f = outputs("mar_tiny")
    m = convert_mar(resave(tmp_path, FIXTURES / "mar_tiny.pth", edit), heads=2)
    with torch.no_grad():
        torch.testing.assert_close(m.condition(f["latents"], f["mask"], f["labels"]), f["z"], atol=1e-5, rtol=1e-5)


# -- files that must not be unpickled -----------------------------------------------------


class NotAllowed:
    pass


@pytest.mark.parametrize("convert", [lambda p: convert_valeoai_v1(p, 16, 2), lambda p: convert_mar(p, heads=2)])
def test_a_pickled_object_is_refused_in_one_line(tmp_path, convert):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "model_ema": {}, "payload": NotAllowed()}, path)
    with pytest.raises(MaskgenError, match="refusing to read.*never unpickled") as e:
        convert(path)
    one_line(e)


def test_v1_does_not_allow_the_namespace_mar_needs(tmp_path):
    path = resave(tmp_path, V1, lambda d: d.update(args=argparse.Namespace(a=1)))
    with pytest.raises(MaskgenError, match="refusing to read.*never unpickled"):
        v1_model(path)


@pytest.mark.parametrize("content", [None, b"", b"not a torch file"])
def test_missing_or_garbage_files(tmp_path, content):
    path = tmp_path / "x.pth"
    if content is not None:
        path.write_bytes(content)
    for convert in (v1_model, lambda p: convert_mar(p, heads=2)):
        with pytest.raises(MaskgenError) as e:
            convert(path)
        one_line(e)


# -- maskgen's own paths on the converted models ------------------------------------------


def test_converted_models_save_and_load(tmp_path):
    f = outputs("valeoai_v1_tiny")
    v1 = v1_model()
    v1.save(tmp_path / "v1")
    back = MaskedTransformer.load(tmp_path / "v1")
    assert back.config == v1.config
    with torch.no_grad():
        assert torch.equal(back(f["tokens"], f["labels"]), v1(f["tokens"], f["labels"]))
    for name in CONTINUOUS:
        f = outputs(f"{name}_tiny")
        m = convert_mar(FIXTURES / f"{name}_tiny.pth", heads=2)
        m.save(tmp_path / name)
        back = ContinuousGenerator.load(tmp_path / name)
        assert back.config == m.config
        with torch.no_grad():
            assert torch.equal(back.condition(f["latents"], f["mask"], f["labels"]), m.condition(f["latents"], f["mask"], f["labels"]))


def test_checkpoints_without_the_new_fields_load_as_before():
    assert GeneratorConfig.from_dict({}) == GeneratorConfig()
    c = GeneratorConfig()
    assert (c.class_position, c.norm_eps, c.stems, c.stem_eps, c.output) == ("first", 1e-5, False, None, "linear")
    assert ContinuousConfig.from_dict({}).norm_eps == 1e-5
    reference = Path(__file__).parents[1] / "src" / "maskgen" / "reference"
    assert MaskedTransformer.load(reference).config.class_position == "first"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(stem_eps=1e-6), "stem_eps applies only with stems"),
        (dict(output="tied", outputs=1), "tied output predicts the codes"),
        (dict(class_position="middle"), "unknown class_position"),
        (dict(output="shared"), "unknown output"),
        (dict(norm_eps=0.0), "norm_eps must be > 0"),
    ],
)
def test_new_generator_options_are_checked(kw, match):
    with pytest.raises(MaskgenError, match=match):
        GeneratorConfig(**kw)


class ContinuousSource(BareGenerator):
    def denoiser(self):
        return ContinuousDenoiser(self.network)


def test_sampling_loop_runs_on_the_converted_v1():
    spec = SamplerSpec(steps=3, schedule="arccos", fill=ConfidenceSpec(choice_temperature=4.5), guidance=[CFGSpec(scale=3.0, ramp="linear")])
    r = spec.build(BareGenerator(v1_model()))(torch.tensor([0, 4, 2]), torch.Generator().manual_seed(0))
    assert r.tokens.shape == (3, 16) and int(r.tokens.max()) < 16 and r.masked_per_step[-1] == [0, 0, 0]


@pytest.mark.parametrize("name", CONTINUOUS)
def test_sampling_loop_runs_on_the_converted_continuous_models(name):
    m = convert_mar(FIXTURES / f"{name}_tiny.pth", heads=2)
    spec = SamplerSpec(steps=3, fill=AncestralSpec(), head=HeadSampling(sampler="ddpm", steps=2), guidance=[CFGSpec(scale=2.0)])
    r = spec.build(ContinuousSource(m))(torch.tensor([0, 4]), torch.Generator().manual_seed(0))
    assert r.tokens.shape == (2, 16, 4) and not r.tokens.isnan().any()
