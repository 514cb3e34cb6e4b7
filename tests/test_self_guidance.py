"""Self-guidance (000): the guidance abstraction, the TOAST module, fine-tuning, sampling."""

import pytest
import torch

from conftest import build_sampler, tiny_generator
from maskgen.sampling.denoiser import DiscreteDenoiser
from maskgen.checkpoint import load_tensors
from maskgen.cli import main
from maskgen.training.checkpoints import StepCheckpoints
from maskgen.errors import MaskgenError
from maskgen.models.toast import ToastModule
from maskgen.models.transformer import MaskedTransformer
from maskgen.sampling import ConfidenceFill, Sampler, Step
from maskgen.sampling.guidance import GuidanceScale
from maskgen.sampling.guidances.blur import BlurGuidance, gaussian_blur_matrix
from maskgen.sampling.guidances.cfg import ClassifierFreeGuidance
from maskgen.sampling.guidances.sag import SelfAttentionGuidance
from maskgen.sampling.guidances.self import SelfGuidance
from maskgen.schedules import get_schedule
from maskgen.training.context import StepContext
from maskgen.training.self_guidance import SelfGuidanceObjective, SelfGuidanceObjectiveConfig, choose_visible


def _toast(generator, seed=1):
    torch.manual_seed(seed)
    module = ToastModule.for_generator(generator).eval()
    for p in module.parameters():  # a trained-looking module, not the identity-ish init
        p.data.normal_(0, 0.3)
    return module


def _state(generator, steps=4):
    """Tokens halfway through sampling, and a step object."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, generator.config.codebook_size, (3, generator.config.num_tokens), generator=g)
    x[:, ::2] = generator.mask_id
    return x, torch.tensor([0, 1, 2]), Step(1, steps, 0.75, 0.5, get_schedule("cosine"))


def _log_probs(generator, guidances, x, labels, step):
    """The guided log-probabilities the loop draws from at ``step``, and the rows they cost."""
    sampler = Sampler(generator, ConfidenceFill(4.5, "linear"), steps=step.total, guidance=guidances)
    with torch.no_grad():
        strong, weaks, scales, rows = sampler.predict(x, labels, step)
        return sampler.model.combine(strong, weaks, scales), rows


def test_scale_zero_is_strong_and_minus_one_is_weak(generator):
    module = _toast(generator)
    x, labels, step = _state(generator)
    strong, _ = _log_probs(generator, [], x, labels, step)
    with torch.no_grad():
        hidden = generator.run(x, labels, hidden=True).hidden
        weak = module.weak_logits(generator, hidden, labels).log_softmax(-1)
    for make in (
        lambda s: SelfGuidance(GuidanceScale(s), module),
        lambda s: BlurGuidance(GuidanceScale(s), generator.config.grid),
        lambda s: SelfAttentionGuidance(GuidanceScale(s), generator.mask_id),
        lambda s: ClassifierFreeGuidance(GuidanceScale(s), generator.null_class),
    ):
        at_zero, _ = _log_probs(generator, [make(0.0)], x, labels, step)
        torch.testing.assert_close(at_zero.log_softmax(-1), strong.log_softmax(-1))
    at_minus_one, _ = _log_probs(generator, [SelfGuidance(GuidanceScale(-1.0), module)], x, labels, step)
    torch.testing.assert_close(at_minus_one.log_softmax(-1), weak, atol=1e-5, rtol=1e-5)
    guided, _ = _log_probs(generator, [SelfGuidance(GuidanceScale(2.0), module)], x, labels, step)
    s = strong.log_softmax(-1)
    torch.testing.assert_close(guided.log_softmax(-1), (weak + 3.0 * (s - weak)).log_softmax(-1), atol=1e-5, rtol=1e-5)


def test_cfg_plus_self_guidance_recovers_each_alone(generator):
    module = _toast(generator)
    x, labels, step = _state(generator)
    cfg = lambda s: ClassifierFreeGuidance(GuidanceScale(s), generator.null_class)  # noqa: E731
    sg = lambda s: SelfGuidance(GuidanceScale(s), module)  # noqa: E731
    both_cfg_only, _ = _log_probs(generator, [cfg(2.0), sg(0.0)], x, labels, step)
    cfg_only, _ = _log_probs(generator, [cfg(2.0)], x, labels, step)
    torch.testing.assert_close(both_cfg_only.log_softmax(-1), cfg_only.log_softmax(-1))
    both_sg_only, rows = _log_probs(generator, [cfg(0.0), sg(1.5)], x, labels, step)
    sg_only, _ = _log_probs(generator, [sg(1.5)], x, labels, step)
    torch.testing.assert_close(both_sg_only.log_softmax(-1), sg_only.log_softmax(-1))
    assert rows == 2 * len(x)  # CFG at scale 0 costs nothing
    _, rows = _log_probs(generator, [cfg(2.0), sg(1.5)], x, labels, step)
    assert rows == 3 * len(x)  # strong + unconditional in one pass, then the blank pass


def test_self_guided_sampling_runs_two_passes_per_step(generator, monkeypatch):
    module = _toast(generator)
    calls = []
    original = MaskedTransformer.run

    def counting(self, tokens, *a, **kw):
        out = original(self, tokens, *a, **kw)
        calls.append(len(out.logits))  # rows predicted (the blank canvas is one shared input row)
        return out

    monkeypatch.setattr(MaskedTransformer, "run", counting)
    steps = 6
    # self-guidance's own setting: Gumbel temperature 25 (Hur et al. 2024, Sec. 5), compound annealing as in its code
    sampler = build_sampler(generator, module=module, steps=steps, guidance="self", scale=1.0, choice_temperature=25.0, annealing="compound")
    res = sampler(torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(0))
    assert len(calls) == 2 * steps and all(n == 4 for n in calls)
    assert res.nfe == 2 * steps
    assert not (res.tokens == generator.mask_id).any()


def test_blur_costs_no_pass_and_sag_one(generator):
    x, labels, step = _state(generator)
    _, rows = _log_probs(generator, [BlurGuidance(GuidanceScale(1.0), generator.config.grid)], x, labels, step)
    assert rows == len(x)
    _, rows = _log_probs(generator, [SelfAttentionGuidance(GuidanceScale(1.0), generator.mask_id)], x, labels, step)
    assert rows == 2 * len(x)
    m = gaussian_blur_matrix((4, 4), 1.0)
    torch.testing.assert_close(m.sum(1), torch.ones(16))
    assert m[0, 0] > m[0, 1] > m[0, 2] > 0 and m[0, 15] < m[0, 5]


def test_sag_remasks_salient_decoded_tokens(generator):
    x, labels, _ = _state(generator)
    with torch.no_grad():
        strong = generator.run(x, labels, saliency=True)
    assert strong.saliency.shape == x.shape
    seen = {}

    model = DiscreteDenoiser(generator)
    plain = model.logits

    def logits(tokens, lab, gamma):
        seen["x"] = tokens
        return plain(tokens, lab, gamma)

    model.logits = logits
    SelfAttentionGuidance(GuidanceScale(1.0), generator.mask_id).weak_logits(model, x, labels, torch.full((3,), 0.5), strong)
    salient = strong.saliency > 1.0
    assert (seen["x"][salient] == generator.mask_id).all()
    assert torch.equal(seen["x"][~salient], x[~salient])


def test_zero_top_down_leaves_the_pass_unchanged(generator):
    x, labels, _ = _state(generator)
    zeros = [torch.zeros(3, generator.config.num_tokens + 1, generator.config.width)] * generator.config.depth
    torch.testing.assert_close(generator(x, None, top_down=zeros), generator(x, None))


def test_error_tokens_replace_thirty_percent_of_visible():
    visible = torch.zeros(4, 20, dtype=torch.bool)
    visible[0, :10] = True  # 10 visible -> 3
    visible[1, :2] = True  # 2 visible -> at least 1
    visible[3] = True  # 20 -> 6; row 2 has none -> 0
    chosen = choose_visible(visible, 0.3, torch.rand(4, 20))
    assert chosen.sum(1).tolist() == [3, 1, 0, 6]
    assert not (chosen & ~visible).any()

    generator = tiny_generator()
    objective = SelfGuidanceObjective(SelfGuidanceObjectiveConfig(task="aux"), generator)
    tokens = torch.randint(0, 16, (8, 16))
    mask = torch.zeros(8, 16, dtype=torch.bool)
    mask[:, :6] = True
    ctx = StepContext(0, torch.Generator().manual_seed(0), slice(0, 8), 8)
    z, errors = objective.corrupt(tokens, torch.zeros(8, dtype=torch.long), mask, ctx)
    assert (z[mask] == generator.mask_id).all() and not (errors & mask).any()
    assert (errors.sum(1) == 3).all()  # floor(0.3 * 10)
    assert torch.equal(z[~mask & ~errors], tokens[~mask & ~errors])


def test_error_token_loss_uses_the_overwritten_positions():
    # the authors' code: cross-entropy on the replaced visible tokens, not on the masked ones
    generator = tiny_generator()
    module = _toast(generator)
    obj = SelfGuidanceObjective(SelfGuidanceObjectiveConfig(task="aux", label_smoothing=0.0, reg_weight=0.0, cond_drop=0.0), generator)
    captured = {}
    corrupt, forward = obj.corrupt, generator.forward

    def spy_corrupt(*a):
        z, target = corrupt(*a)
        captured["z"], captured["target"] = z, target
        return z, target

    def spy_forward(tokens, labels, t=None, top_down=None):
        out = forward(tokens, labels, t, top_down)
        if top_down is not None:
            captured["logits"] = out
        return out

    obj.corrupt, generator.forward = spy_corrupt, spy_forward
    tokens = torch.randint(0, 16, (8, 16), generator=torch.Generator().manual_seed(1))
    loss, _ = obj(module, (tokens, torch.zeros(8, dtype=torch.long)), StepContext(0, torch.Generator().manual_seed(3), slice(0, 8), 8))
    target, z = captured["target"], captured["z"]
    masked = z == generator.mask_id
    assert target.any() and not (target & masked).any()  # overwritten visible positions only
    logp = captured["logits"].detach().double().log_softmax(-1)
    ce = -logp.gather(-1, tokens[..., None]).squeeze(-1)
    assert loss.item() == pytest.approx(ce[target].mean().item(), rel=1e-4)


@pytest.mark.parametrize("task", ["aux", "mask"])
def test_finetune_trains_only_the_module(model_dir, tmp_path, capsys, task):
    base = load_tensors(model_dir / "generator.safetensors")
    out = tmp_path / f"sg-{task}"
    args = ["finetune-sg", "--model", str(model_dir), "--out", str(out), "--task", task, "--steps", "3", "--batch-size", "8", "--lr", "1e-2"]
    assert main(args) == 0
    assert "trainable parameters" in capsys.readouterr().out
    after = load_tensors(model_dir / "generator.safetensors")
    assert base.keys() == after.keys() and all(torch.equal(base[k], after[k]) for k in base)
    state = load_tensors(StepCheckpoints(out).latest() / "train_state.safetensors")
    module_keys = set(ToastModule.for_generator(MaskedTransformer.load(model_dir)).state_dict())
    assert {k[6:] for k in state if k.startswith("model.")} == module_keys
    generator = MaskedTransformer.load(model_dir)
    trained = ToastModule.load(out, generator)
    fresh = ToastModule.for_generator(generator)
    assert torch.equal(fresh.transform, torch.eye(generator.config.width))
    assert not torch.equal(trained.transform, fresh.transform)  # the module moved


def test_module_refuses_a_foreign_generator(model_dir, tmp_path):
    generator = MaskedTransformer.load(model_dir)
    _toast(generator).save(tmp_path / "sg")
    ToastModule.load(tmp_path / "sg", generator)
    other = tiny_generator(seed=5, codebook_size=generator.config.codebook_size, grid=generator.config.grid,
                           num_classes=generator.config.num_classes, width=generator.config.width,
                           depth=generator.config.depth, heads=generator.config.heads)
    other.save(tmp_path / "other")
    with pytest.raises(MaskgenError, match="trained on generator sha256"):
        ToastModule.load(tmp_path / "sg", MaskedTransformer.load(tmp_path / "other"))
    with pytest.raises(MaskgenError, match="width"):
        ToastModule.load(tmp_path / "sg", tiny_generator(width=16))


def test_sample_cli_with_every_guidance(model_dir, tmp_path, capsys):
    sg = tmp_path / "sg"
    assert main(["finetune-sg", "--model", str(model_dir), "--out", str(sg), "--steps", "2", "--batch-size", "8"]) == 0
    common = ["sample", "--model", str(model_dir), "--num", "6", "--steps", "4"]
    assert main([*common, "--out", str(tmp_path / "s"), "--guidance", "self", "--scale", "1.0", "--sg-module", str(sg),
                 "--choice-temperature", "25", "--annealing", "compound", "--cfg", "1.0"]) == 0
    assert "NFE 12" in capsys.readouterr().out  # 4 steps x (strong + unconditional + blank)
    for name in ("blur", "sag"):
        assert main([*common, "--out", str(tmp_path / name), "--guidance", name]) == 0
    assert main([*common, "--out", str(tmp_path / "x"), "--guidance", "self"]) == 2  # no module in MODEL/self-guidance
    assert "finetune-sg" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "x"), "--guidance", "smooth"]) == 2
    assert "unknown guidance" in capsys.readouterr().err


def test_toast_inference_path_equals_layer_by_layer(generator):
    # sampling multiplies the TOAST chain and the value weights out; training runs it layer
    # by layer through ``top_down``: the two are the same linear map up to float32 rounding
    module = _toast(generator)
    x, labels, _ = _state(generator)
    with torch.no_grad():
        hidden = generator.run(x, labels, hidden=True).hidden
        layered = generator(torch.full_like(x, generator.mask_id), None, top_down=module(hidden, labels))
        folded = module.weak_logits(generator, hidden, labels)
    torch.testing.assert_close(folded, layered, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(layered, generator(torch.full_like(x, generator.mask_id), None), atol=1e-3)  # the steer matters
