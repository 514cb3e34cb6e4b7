"""The continuous-token generator (eMIGM / MAR): MAE encoder, head objective, the loop with a
diffusion head, CFG on eps, refusals, checkpoints, a short training run.

Only the diffusion head's interface is used (``DiffusionHead``, ``CosineNoise``,
``denoising_loss``, ``HeadSampling``, ``sample_tokens``), never a particular head's internals."""

import json
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from maskgen import pipeline
from maskgen.checkpoint import Checkpointable, ConfigDict
from maskgen.errors import MaskgenError
from maskgen.models.continuous import ContinuousConfig, ContinuousGenerator
from maskgen.models.transformer import MaskedTransformer
from maskgen.pipelines import MaskGen
from maskgen.sampling.continuous import ContinuousDenoiser
from maskgen.sampling.fills.critic import CriticFill
from maskgen.sampling.draw import TokenDraw
from maskgen.sampling.fill import Step
from maskgen.sampling.guidance import GuidanceScale
from maskgen.sampling.guidances.self import SelfGuidance
from maskgen.sampling.head_sampler import HeadSampling
from maskgen.sampling.spec import AncestralSpec, BlurSpec, CFGSpec, ConfidenceSpec, CriticSpec, SAGSpec, SamplerSpec, SelfSpec
from maskgen.schedules import get_schedule
from maskgen.training.context import StepContext
from maskgen.training.continuous import MaskedLatentObjective
from maskgen.training.masking import MaskedObjectiveConfig
from maskgen.training.trainer import TrainConfig, Trainer, seeded

LABELS = torch.tensor([0, 1, 2, 0])
DDPM = HeadSampling(sampler="ddpm", steps=3)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def tiny(arch="mae", seed=0, **kw):
    cfg = dict(token_dim=4, grid=(3, 3), num_classes=3, width=32, depth=2, heads=2, head_width=32, head_depth=1, arch=arch, buffer_size=2)
    cfg.update(kw)
    return seeded(seed, lambda: ContinuousGenerator(ContinuousConfig(**cfg))).eval()


@dataclass
class StubDecoderConfig(ConfigDict):
    grid: tuple[int, int] = (3, 3)
    token_dim: int = 4


class StubDecoder(nn.Module, Checkpointable):
    """A stand-in KL tokenizer: ``decode`` maps latents [B, N, d] to uint8 grey images."""

    checkpoint_name, checkpoint_kind, config_class = "tokenizer", "stub_decoder", StubDecoderConfig

    def __init__(self, config=None):
        super().__init__()
        self.config = config or StubDecoderConfig()
        self.scale = nn.Parameter(torch.ones(1))
        self.sha256 = None

    grid = property(lambda self: tuple(self.config.grid))
    token_dim = property(lambda self: self.config.token_dim)

    @classmethod
    def load(cls, folder, map_location="cpu"):
        return cls.read(folder)[0]

    def decode(self, latents):
        h, w = self.grid
        v = (latents.mean(-1) * self.scale).sigmoid().view(-1, 1, h, w)
        return (v * 255).round().to(torch.uint8)


def build(network, **spec):
    return SamplerSpec(**spec).build(MaskGen(network, StubDecoder()))


# -- the model ------------------------------------------------------------------------------
def test_mae_encoder_sees_only_visible_tokens():
    m = tiny("mae")
    latents = torch.randn(2, 9, 4, generator=gen(1))
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, [1, 4, 7]] = True  # 6 visible
    mask[1, [0, 2, 3, 5, 6, 8]] = True  # 3 visible: ragged rows, as Bernoulli masking gives
    lengths, encoded = [], []
    m.encoder[0].register_forward_pre_hook(lambda mod, args: lengths.append(args[0].shape[1]))
    m.encoder_norm.register_forward_hook(lambda mod, args, out: encoded.append(out))
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        z = m.condition(latents, mask, labels)
        other = torch.where(mask[..., None], 100 * torch.randn(2, 9, 4, generator=gen(2)), latents)
        z_other = m.condition(other, mask, labels)
        z_nan = m.condition(latents.masked_fill(mask[..., None], float("nan")), mask, labels)
        z_row = m.condition(latents[1:], mask[1:], labels[1:])
        seen = latents.clone()
        seen[0, 0] += 1.0
        z_seen = m.condition(seen, mask, labels)
    assert lengths == [2 + 6] * 3 + [2 + 3, 2 + 6]  # buffer slots + the longest row's visible tokens
    assert torch.equal(encoded[0], encoded[1]) and torch.equal(z, z_other) and torch.equal(z, z_nan)
    assert torch.allclose(z[1:], z_row, atol=1e-5)  # padding keys are hidden: a row alone gives the same z
    assert not torch.allclose(z[0], z_seen[0])  # a visible token does matter
    assert z.shape == (2, 9, 32)


def test_single_transformer_runs_over_every_position():
    m = tiny("single")
    lengths = []
    m.encoder[0].register_forward_pre_hook(lambda mod, args: lengths.append(args[0].shape[1]))
    latents, mask = torch.randn(2, 9, 4, generator=gen(1)), torch.rand(2, 9, generator=gen(2)) < 0.5
    with torch.no_grad():
        z = m.condition(latents, mask, torch.tensor([0, 3]))
        z2 = m.condition(latents + 50 * mask[..., None], mask, torch.tensor([0, 3]))
    assert lengths == [2 + 9, 2 + 9] and torch.equal(z, z2)


def test_bad_config():
    with pytest.raises(MaskgenError, match="decoder_depth applies to arch mae"):
        ContinuousConfig(arch="single", decoder_depth=2)
    with pytest.raises(MaskgenError, match="unknown arch"):
        ContinuousConfig(arch="unet")
    assert ContinuousConfig(arch="mae", depth=3).decoder_depth == 3


def test_unconditional_input():
    # eMIGM's CFG with mask: the null class is the mask embedding; MAR: a learned class row
    mask_mode, null_mode = tiny(uncond="mask"), tiny(uncond="null")
    assert torch.equal(mask_mode.class_slots(torch.tensor([3]))[0], mask_mode.mask_emb.expand(2, -1))
    assert torch.equal(null_mode.class_slots(torch.tensor([3]))[0], null_mode.cls_emb.weight[3].expand(2, -1))


def test_explicit_timestep_model_receives_t():
    m = tiny(timestep_input=True, time_schedule="linear")
    seen, condition = [], m.condition
    m.condition = lambda latents, mask, labels, t=None: seen.append(t) or condition(latents, mask, labels, t)
    build(m, steps=4, fill=AncestralSpec(), schedule="linear", head=DDPM)(LABELS, gen())
    assert [float(t[0]) for t in seen] == pytest.approx([1.0, 0.75, 0.5, 0.25])


# -- the objective --------------------------------------------------------------------------
class LossStub(nn.Module):
    """A generator whose per-token loss is a known table; records what the objective gave it."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, latents, mask, labels, t, generator):
        self.mask, self.labels, self.t, self.generator = mask, labels, t, generator
        return self.table.clone()


def ctx(b, step=0):
    return StepContext(step=step, rng=torch.Generator().manual_seed(step), rows=slice(0, b), global_batch=b)


@pytest.mark.parametrize("weighting", ["one", "elbo", "per-image"])
@pytest.mark.parametrize("masking", ["count", "bernoulli"])
def test_head_objective_weighting_by_hand(weighting, masking):
    b, n = 6, 10
    table = torch.arange(b * n, dtype=torch.float32).view(b, n) + 1.0
    stub = LossStub(table)
    cfg = MaskedObjectiveConfig(schedule="exp", masking=masking, weighting=weighting, t_min=0.2, cond_drop=0.5)
    loss, metrics = MaskedLatentObjective(cfg, null_class=3, timestep_input=True)(stub, (torch.zeros(b, n, 4), torch.zeros(b, dtype=torch.long)), ctx(b))
    t = stub.t.double()
    # exp schedule (eMIGM Table 4), normalised: gamma = (1 - e^-5t)/(1 - e^-5), so gamma'/gamma = 5 e^-5t / (1 - e^-5t)
    w = {"one": torch.ones(b), "elbo": 5 * torch.exp(-5 * t) / (1 - torch.exp(-5 * t)), "per-image": n / stub.mask.sum(1).clamp_min(1)}[weighting]
    expected = sum(float(w[i]) * float(table[i][stub.mask[i]].sum()) / n for i in range(b)) / b
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert metrics["mask_frac"] == pytest.approx(stub.mask.float().mean().item())
    assert (t >= 0.2 - 1e-6).all() and ((stub.labels == 3) | (stub.labels == 0)).all()


def test_head_objective_refuses_label_smoothing():
    with pytest.raises(MaskgenError, match="label_smoothing applies to cross-entropy"):
        MaskedLatentObjective(MaskedObjectiveConfig(label_smoothing=0.1), null_class=3)


def test_forward_loss_only_at_masked_positions():
    m = tiny("mae").train()
    # MAR zero-initialises the head's output and modulation layers (z reaches the output,
    # and a gradient the trunk, only after the first updates): perturb them
    for i, p in enumerate((m.head.final_layer.linear.weight, m.head.final_layer.adaLN_modulation[-1].weight)):
        torch.nn.init.normal_(p, std=0.1, generator=gen(4 + i))
    latents, mask = torch.randn(2, 9, 4, generator=gen(1)), torch.rand(2, 9, generator=gen(2)) < 0.5
    per_token = m(latents, mask, torch.tensor([0, 1]), None, gen(3))
    assert (per_token[~mask] == 0).all() and (per_token[mask] > 0).all()
    per_token.sum().backward()
    assert m.token_proj.weight.grad.abs().sum() > 0 and m.mask_emb.grad.abs().sum() > 0


class Latents:
    """Class-dependent Gaussian latents: class c has mean c - 1 at every position, std 0.1."""

    def __init__(self, count=96, n=4, d=4):
        self.labels = torch.arange(count) % 3
        noise = 0.1 * torch.randn(count, n, d, generator=gen(7))
        self.latents = (self.labels.float() - 1.0)[:, None, None] + noise

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        return self.latents[idx], self.labels[idx]


def test_training_reduces_the_head_loss(tmp_path):
    model = tiny("mae", grid=(2, 2), depth=1, head_draws=2)
    objective = MaskedLatentObjective(MaskedObjectiveConfig(schedule="exp", masking="bernoulli", t_min=0.2, t_sampling="clamp"), model.null_class)
    train = TrainConfig(steps=40, batch_size=16, lr=3e-3, warmup=5, log_every=1, save_every=1000, seed=1, device="cpu", bf16=False)
    hist = Trainer(model, objective, Latents(), train, tmp_path, save_model=lambda m, f: m.save(f)).fit(progress=False)
    first, last = (sum(h["loss"] for h in part) / len(part) for part in (hist[:10], hist[-10:]))
    assert last < 0.6 * first  # about 0.7 -> 0.24 with any seed
    assert ContinuousGenerator.load(tmp_path).config == model.config


# -- sampling -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mae", "single"])
@pytest.mark.parametrize("fill", [AncestralSpec(), ConfidenceSpec(annealing="random")])
def test_loop_end_to_end(arch, fill):
    m = tiny(arch)
    r = build(m, steps=4, fill=fill, head=DDPM)(LABELS, gen())
    assert r.tokens.shape == (4, 9, 4) and not r.tokens.isnan().any()
    assert r.masked_per_step[-1] == [0, 0, 0, 0]
    assert r.nfe == 4 and r.settings["sampler"]["head"] == {"sampler": "ddpm", "steps": 3, "temperature": 1.0, "chain": "clipped"}


def test_mar_random_order_rule_follows_the_cosine_schedule():
    r = build(tiny(), steps=4, fill=ConfidenceSpec(annealing="random"), head=DDPM)(LABELS, gen())
    s = get_schedule("cosine")
    # MAR: floor(N cos(pi/2 (k+1)/T)) stay masked, at least one until the last step
    assert [row[0] for row in r.masked_per_step] == [max(1, math.floor(9 * float(s.gamma((3 - i) / 4)))) for i in range(3)] + [0]


def head_passes(history, n, active, head_steps):
    """Per-image head passes by hand: head_steps x (2 with CFG, else 1) at every step in which an image received tokens."""
    before = [[n] * len(history[0])] + history[:-1]
    per_image = [sum(head_steps * (2 if active[i] else 1) for i, (a, b) in enumerate(zip(col_a, col_b)) if b < a) for col_a, col_b in zip(zip(*before), zip(*history))]
    return sum(per_image) / len(per_image)


@pytest.mark.parametrize(
    "guidance, active",
    [
        ([], [False] * 10),
        ([CFGSpec(scale=2.0)], [True] * 10),
        ([CFGSpec(scale=2.0, interval=(0.1, 0.3))], [s in (0.3, 0.2) for s in [(9 - i) / 10 for i in range(10)]]),
    ],
)
def test_nfe_and_head_passes(guidance, active):
    r = build(tiny(), steps=10, fill=AncestralSpec(), head=DDPM, guidance=guidance)(LABELS, gen())
    assert r.nfe == 10 + sum(active) == r.settings["nfe_generator"]
    assert r.settings["nfe_head"] == pytest.approx(head_passes(r.masked_per_step, 9, active, 3))


def test_same_seed_same_latents():
    s = build(tiny(), steps=4, fill=AncestralSpec(), head=DDPM, guidance=[CFGSpec(scale=1.5)])
    a, b, c = s(LABELS, gen(3)), s(LABELS, gen(3)), s(LABELS, gen(4))
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


class HeadStub(nn.Module):
    """Head output known from z: eps = z[:, :d] + x, variance part = z[:, d:2d]; records its batch."""

    def __init__(self, d):
        super().__init__()
        self.d, self.batches = d, []

    def forward(self, x, t, z):
        self.batches.append(len(x))
        return torch.cat([z[:, : self.d] + x, z[:, self.d : 2 * self.d]], dim=1)


def test_cfg_is_applied_to_the_heads_eps():
    den = ContinuousDenoiser(tiny())
    den.network.head = HeadStub(4)
    c, u, x = torch.randn(5, 32, generator=gen(1)), torch.randn(5, 32, generator=gen(2)), torch.randn(5, 4, generator=gen(3))
    out = den.guided_eps(c, [u], [1.5])(x, torch.full((5,), 10.0))
    cfg = 2.5  # MAR's u + cfg (c - u) with cfg = 1 + s
    eps_c, eps_u = c[:, :4] + x, u[:, :4] + x
    assert torch.allclose(out[:, :4], eps_u + cfg * (eps_c - eps_u), atol=1e-6)
    assert torch.allclose(out[:, 4:], c[:, 4:8])  # the variance output is the conditional branch's
    assert den.network.head.batches == [10]  # cond and uncond in one head pass
    assert torch.equal(den.guided_eps(c, [], [])(x, torch.zeros(5)), torch.cat([eps_c, c[:, 4:8]], 1))


def test_the_head_runs_only_where_a_rule_reveals():
    den = ContinuousDenoiser(tiny())
    den.network.head = HeadStub(4)
    s = build(den.network, steps=3, fill=AncestralSpec(), head=DDPM, guidance=[CFGSpec(scale=1.0)])
    r = s(LABELS, gen(1))
    revealed = [4 * 9 - sum(row) for row in r.masked_per_step]
    drawn = [b // 2 for b in s.model.network.head.batches[::3]]  # 3 head steps per loop step, 2 branches
    assert sum(drawn) == 4 * 9 and drawn == [a - b for a, b in zip(revealed, [0] + revealed[:-1]) if a != b]


def test_revealed_fraction_ramp():
    sched = get_schedule("cosine")
    step = Step(1, 4, 0.75, 0.5, sched)
    assert GuidanceScale(3.0, ramp="revealed").at(step) == pytest.approx(3.0 * (1 - math.cos(math.pi / 4)))


# -- refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, match",
    [
        (dict(fill=ConfidenceSpec()), "confidence fill rule ranks token log-probabilities"),
        (dict(fill=CriticSpec()), "critic works on a discrete-token generator"),
        (dict(guidance=[SelfSpec(scale=1.0)]), "self-guidance works on a discrete-token generator"),
        (dict(guidance=[BlurSpec(scale=1.0)]), "blur guidance needs a discrete-token generator"),
        (dict(guidance=[SAGSpec(scale=1.0)]), "sag guidance needs a discrete-token generator"),
        (dict(draw=TokenDraw(top_k=5)), "top_k of the token draw applies to discrete tokens"),
        (dict(draw=TokenDraw(top_p=0.9, argmax_last=True)), "top_p, argmax_last of the token draw"),
    ],
)
def test_discrete_only_pieces_refuse_a_continuous_model(spec, match):
    with pytest.raises(MaskgenError, match=match) as e:
        build(tiny(), **spec)
    assert "\n" not in str(e.value)


def test_pieces_refuse_a_continuous_denoiser_directly():
    den = ContinuousDenoiser(tiny())
    for piece, match in [(CriticFill(None, 1.0, (0.0, 1.0)), "critic fill rule needs a discrete"), (SelfGuidance(GuidanceScale(1.0), None), "self guidance needs a discrete")]:
        with pytest.raises(MaskgenError, match=match):
            piece.check(den)
    with pytest.raises(MaskgenError, match="draws tokens with its diffusion head"):
        den.check_draw(TokenDraw())


def test_head_settings_refuse_a_discrete_model_and_bad_values():
    from conftest import BareGenerator, tiny_generator

    with pytest.raises(MaskgenError, match="head sampler settings apply to a continuous-token generator"):
        SamplerSpec(head=HeadSampling()).build(BareGenerator(tiny_generator()))
    with pytest.raises(MaskgenError, match="has no option 'stepz'"):
        SamplerSpec.from_dict({"head": {"sampler": "ddpm", "stepz": 3}})
    for bad in (dict(sampler="euler"), dict(steps=0)):
        with pytest.raises(MaskgenError) as e:
            HeadSampling(**bad)
        assert "\n" not in str(e.value)


def test_head_settings_in_the_spec():
    spec = SamplerSpec.from_options(sampler="ancestral", steps=4, head_sampler="ddpm", head_steps=5, head_temperature=0.9)
    assert spec.head == HeadSampling("ddpm", 5, 0.9) and SamplerSpec.from_dict(spec.to_dict()) == spec
    assert "head" not in SamplerSpec().to_dict()  # discrete specs are unchanged
    # a continuous model without head settings runs HeadSampling's defaults and records them
    s = build(tiny(), steps=2, fill=AncestralSpec())
    assert s.spec.head == HeadSampling() and isinstance(s.draw, HeadSampling)


# -- checkpoints and the model folder -------------------------------------------------------
def test_checkpoint_round_trip_is_strict(tmp_path):
    m = tiny("mae")
    m.save(tmp_path / "a")
    back = ContinuousGenerator.load(tmp_path / "a")
    assert back.config == m.config and back.sha256
    latents, mask = torch.randn(2, 9, 4, generator=gen(1)), torch.rand(2, 9, generator=gen(2)) < 0.5
    with torch.no_grad():
        assert torch.equal(m.condition(latents, mask, LABELS[:2]), back.condition(latents, mask, LABELS[:2]))
    with pytest.raises(MaskgenError, match="holds a continuous_generator, not a generator"):
        MaskedTransformer.load(tmp_path / "a")
    # the same weights read under another layout: a one-line key mismatch, never a partial load
    record = json.loads((tmp_path / "a" / "generator.json").read_text())
    record["config"].update(arch="single", decoder_depth=None)
    (tmp_path / "a" / "generator.json").write_text(json.dumps(record))
    with pytest.raises(MaskgenError, match="checkpoint does not match ContinuousGenerator.*unexpected keys: decoder") as e:
        ContinuousGenerator.load(tmp_path / "a")
    assert "\n" not in str(e.value)


def test_model_folder_generates_images(tmp_path):
    from maskgen.tokenizers.kl import KLConfig, KLTokenizer

    tiny().save(tmp_path)
    KLTokenizer(KLConfig(image_size=12, channels=1, token_dim=4, downsample=4, width=8)).save(tmp_path)
    model = MaskGen.load(tmp_path)
    assert model.continuous and isinstance(model.denoiser(), ContinuousDenoiser)
    sampler = model.sampler(sampler="ancestral", steps=3, cfg=1.0, head_sampler="ddpm", head_steps=2)
    images, result = model.generate(torch.tensor([0, 1, 2]), sampler, seed=0, batch_size=2, progress=False)
    assert images.shape == (3, 1, 12, 12) and images.dtype == torch.uint8
    assert result.tokens.shape == (3, 9, 4) and result.settings["nfe_head"] > 0 and result.nfe == 6
    # each image's head noise comes from its own stream (seed, index): batch size does not matter
    _, two = model.generate(torch.tensor([0, 1]), sampler, seed=0, batch_size=1, progress=False)
    assert torch.equal(two.tokens, result.tokens[:2])
    with pytest.raises(MaskgenError, match="does not match tokenizer"):
        MaskGen(tiny(), StubDecoder(StubDecoderConfig(token_dim=8)))
