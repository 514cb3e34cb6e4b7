"""Training presets (``maskgen train --preset``): each preset's loss on a fixed batch equals the
authors' code's loss draw for draw, on fixtures made by running that code
(``fixtures/make_training_preset_fixtures.py``), plus the CLI, dropout and resume contracts."""

from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from maskgen.cli import main, parse_args
from maskgen.convert.mar import convert_mar
from maskgen.convert.valeoai_v1 import convert_valeoai_v1
from maskgen.errors import MaskgenError
from maskgen.models.diffusion_head import GivenNoise
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.training.context import ReplayContext
from maskgen.training.continuous import MaskedLatentObjective
from maskgen.training.joint import JointObjective, JointObjectiveConfig
from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective, truncated_normal

FIXTURES = Path(__file__).parent / "fixtures"
PRESETS = Path(__file__).parents[1] / "src" / "maskgen" / "training" / "presets"


def preset(name: str, cls=MaskedObjectiveConfig):
    values = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    keep = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in keep}, preset=name)


def replay(batch: int, given: list, head=None) -> ReplayContext:
    return ReplayContext(step=0, rng=torch.Generator(), rows=slice(0, batch), global_batch=batch, given=list(given), head=head)


def head_noise(f: dict, mask: torch.Tensor) -> GivenNoise:
    """Their (t, noise) per (draw, token) over all tokens, kept at maskgen's masked tokens."""
    draws = len(f["head_t"]) // mask.numel()
    keep = mask.reshape(-1).repeat(draws)
    return GivenNoise(f["head_t"][keep], f["head_noise"][keep])


def scores_of(mask: torch.Tensor) -> torch.Tensor:
    """Uniform scores whose lowest ``mask.sum(1)`` are exactly ``mask`` (distinct ranks)."""
    ramp = torch.arange(mask.shape[1]) * 1e-3
    return torch.where(mask, 0.25, 0.75) + ramp


def test_mar_truncated_normal_matches_scipy():
    f = load_file(FIXTURES / "presets" / "mar.safetensors")
    r = truncated_normal(f["ppf_u"], 0.7)
    assert torch.allclose(r, f["ppf_r"], atol=1e-12)
    assert torch.allclose(truncated_normal(f["ratio_u"], 0.7), f["ratio"], atol=1e-12)


def test_mar_preset_loss_equals_its_code():
    f = load_file(FIXTURES / "presets" / "mar.safetensors")
    model = convert_mar(FIXTURES / "mar_tiny.pth", heads=2).train()
    b, n = f["orders"].shape
    scores = torch.empty(b, n).scatter_(1, f["orders"], ((torch.arange(n) + 0.5) / n).expand(b, n))
    k = int(torch.ceil(f["ratio"] * n))
    mask = torch.zeros(b, n, dtype=torch.bool).scatter_(1, f["orders"][:, :k], True)
    objective = MaskedLatentObjective(preset("mar"), model.null_class)
    ctx = replay(b, [f["ratio_u"], scores, f["drop_u"]], head_noise(f, mask))
    loss, metrics = objective(model, (f["latents"], f["labels"]), ctx)
    assert metrics["mask_frac"] == pytest.approx(k / n)
    assert (f["drop_u"] < 0.1).any()  # the fixture exercises the label drop
    assert loss.item() == pytest.approx(f["loss"].item(), rel=1e-5)


def test_emigm_preset_loss_equals_its_code():
    f = load_file(FIXTURES / "presets" / "emigm.safetensors")
    model = convert_mar(FIXTURES / "emigm_tiny.pth", heads=2).train()
    b, n = f["perms"].shape
    t = f["t_u"][-1].float().clamp(min=0.2)  # its code's float32 masking rate, to build the mask
    pattern = f["pattern_u"][-1] < 1 - torch.exp(-5 * ((1 - 1e-3) * t + 1e-3))
    mask = torch.stack([pattern[p] for p in f["perms"]])
    given = [g for pair in zip(f["t_u"][:, None], f["pattern_u"][:, None]) for g in pair]
    objective = MaskedLatentObjective(preset("emigm"), model.null_class)
    ctx = replay(b, [*given, scores_of(mask), f["drop_u"]], head_noise(f, mask))
    loss, metrics = objective(model, (f["latents"], f["labels"]), ctx)
    assert metrics["mask_frac"] == pytest.approx(pattern.sum().item() / n)
    assert loss.item() == pytest.approx(f["loss"].item(), rel=1e-5)


def test_valeoai_v1_preset_loss_equals_its_code_on_the_codes():
    """Draw for draw on its masking, label drop, smoothing and all-token mean. Its softmax also
    covers [MASK] (K + 1 logits), which maskgen's generator does not predict: the fixture's
    ``loss_codes`` is its criterion on the K code logits, ``loss`` its full loss."""
    f = load_file(FIXTURES / "presets" / "valeoai-v1.safetensors")
    model = convert_valeoai_v1(FIXTURES / "valeoai_v1_tiny.pth", 16, 2).train()
    b, n = f["tokens"].shape
    objective = MaskedTokenObjective(preset("valeoai-v1"), model.mask_id, model.null_class)
    given = [1.0 - f["r"].double(), f["mask_u"], f["drop_u"]]  # its r is 1 - t: arccos(r) = gamma(1 - r)
    t, mask, labels = objective.corrupt(n, f["labels"], replay(b, given))
    assert torch.equal(mask, f["mask"])
    loss, _ = objective(model, (f["tokens"], f["labels"]), replay(b, given))
    assert loss.item() == pytest.approx(f["loss_codes"].item(), rel=1e-5)
    assert abs(loss.item() - f["loss"].item()) > 1e-3  # the [MASK] logit: the remaining difference


class StubJoint(torch.nn.Module):
    """The fixture's logit tables read at each position's input, in maskgen's joint layout."""

    def __init__(self, tx: torch.Tensor, ty: torch.Tensor):
        super().__init__()
        self.tx, self.ty = tx, ty
        self.kx, self.ky = tx.shape[-1] - 1, ty.shape[-1] - 1

    def forward(self, tokens, labels, t):
        nx, mask_id = len(self.tx), self.kx + self.ky
        x, y = tokens[:, :nx], tokens[:, nx:]
        x = torch.where(x == mask_id, self.kx, x)
        y = torch.where(y == mask_id, self.ky, y - self.kx)
        lx = self.tx[torch.arange(nx)[None], x][..., : self.kx]
        ly = self.ty[torch.arange(len(self.ty))[None], y][..., : self.ky]
        far = -1e4
        return torch.cat([torch.cat([lx, torch.full(lx.shape[:2] + (self.ky,), far)], -1),
                          torch.cat([torch.full(ly.shape[:2] + (self.kx,), far), ly], -1)], 1)


def test_di_preset_joint_loss_equals_its_code():
    f = load_file(FIXTURES / "presets" / "di.safetensors")
    stub = StubJoint(f["table_x"], f["table_y"])
    kx, tx, ty = stub.kx, f["x"].shape[1], f["y"].shape[1]
    b = len(f["x"])
    cfg = preset("di", JointObjectiveConfig)
    objective = JointObjective(cfg, {"image": slice(0, tx), "segmentation": slice(tx, tx + ty)}, kx + stub.ky, False)
    masks = (f["xt"] == kx, f["yt"] == stub.ky)
    zeros, ones = torch.zeros(b, dtype=torch.float64), torch.ones(b, dtype=torch.float64)
    given = [zeros, ones, zeros]  # the shared t (unused), nothing given
    for u, m in ((f["t_x"], masks[0]), (f["t_y"], masks[1])):
        # its t = (1 - 1e-3) U + 1e-3 counts towards the data; maskgen's 0.999 u towards the mask
        given += [1.0 - u.double(), torch.where(m, 0.0, 1.0), ones]
    z0 = torch.cat([f["x"], f["y"] + kx], 1)
    times, mask = objective.corrupt_joint(tx + ty, replay(b, given))
    assert torch.equal(mask, torch.cat(masks, 1))
    loss, _ = objective(stub, (z0, torch.zeros(b, dtype=torch.long)), replay(b, given))
    assert loss.item() == pytest.approx(f["loss"].item(), rel=1e-5)


def test_dropout_off_by_default_train_mode_only_and_saved(tmp_path):
    torch.manual_seed(0)
    cfg = dict(codebook_size=16, grid=(4, 4), num_classes=3, width=32, depth=2, heads=2)
    plain = MaskedTransformer(GeneratorConfig(**cfg))
    drop = MaskedTransformer(GeneratorConfig(**cfg, attn_dropout=0.1, proj_dropout=0.1, mlp_dropout=0.1))
    drop.load_state_dict(plain.state_dict())
    tokens, labels = torch.randint(0, 17, (2, 16)), torch.tensor([0, 3])
    plain.train()
    torch.manual_seed(1)
    a = plain(tokens, labels)
    assert torch.equal(a, plain(tokens, labels))  # no dropout by default, even in train mode
    drop.eval()
    assert torch.allclose(drop(tokens, labels), a, atol=1e-6)
    drop.train()
    assert not torch.allclose(drop(tokens, labels), a, atol=1e-3)
    drop.save(tmp_path)
    assert MaskedTransformer.load(tmp_path).config.mlp_dropout == 0.1
    with pytest.raises(MaskgenError):
        GeneratorConfig(**cfg, attn_dropout=1.0)


def test_preset_precedence_and_unknown_name(tmp_path):
    base = ["train", "--tokenizer", "t", "--out", "o"]
    a = parse_args([*base, "--preset", "mar"])
    assert (a.preset, a.weighting, a.t_sampling, a.t_min, a.attn_dropout) == ("mar", "batch-masked-mean", "truncnorm", 0.7, 0.1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("preset: emigm\nt_min: 0.3\ncond_drop: 0.2\n")
    a = parse_args([*base, "--config", str(recipe), "--cond-drop", "0.05"])  # CLI > recipe > preset
    assert (a.preset, a.masking, a.t_min, a.cond_drop) == ("emigm", "batch-bernoulli", 0.3, 0.05)
    with pytest.raises(MaskgenError, match="unknown training preset 'nope'; choose from di, emigm, mar, valeoai-v1"):
        parse_args([*base, "--preset", "nope"])


def test_preset_recorded_and_resume_refuses_another(tmp_path, model_dir):
    from maskgen.checkpoint import load_json

    out = tmp_path / "gen"
    args = ["train", "--data", "embedded", "--tokenizer", str(model_dir.parent / "tok"), "--out", str(out),
            "--steps", "2", "--batch-size", "8", "--width", "16", "--depth", "1", "--heads", "2"]
    assert main([*args, "--preset", "valeoai-v1", "--stop-at", "1"]) == 0
    assert load_json(out / "generator.json")["objective"]["preset"] == "valeoai-v1"
    assert main([*args, "--preset", "mar", "--resume"]) == 2
    assert main([*args, "--preset", "valeoai-v1", "--resume"]) == 0


def test_joint_only_and_continuous_only_options_refused():
    with pytest.raises(MaskgenError, match="batch-masked-mean"):
        JointObjectiveConfig(weighting="all-tokens")
    with pytest.raises(MaskgenError, match="all-tokens"):
        MaskedLatentObjective(MaskedObjectiveConfig(weighting="all-tokens"), 3)
    with pytest.raises(MaskgenError, match="batch_time"):
        MaskedObjectiveConfig(masking="batch-bernoulli")
    with pytest.raises(MaskgenError, match="t_max"):
        MaskedObjectiveConfig(t_sampling="clamp", t_max=0.9)
    with pytest.raises(MaskgenError, match="training-only"):
        MaskedTokenObjective(MaskedObjectiveConfig(schedule="emigm-exp", batch_time=True), 16, 3, timestep_input=True)
