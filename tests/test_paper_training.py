"""Training-side definitions checked against the papers, each against a hand computation.

eMIGM Eq. 7 / Discrete Interpolants Eq. 4 (w = 1 sums the masked cross-entropy), the ELBO
weight, t ~ U[t_min, 1] against eMIGM's clamp, the time a critic or a self-guidance module
feeds an explicit-timestep generator, and seeded initialisation.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.training.context import StepContext
from maskgen.training.critic import CriticObjective, CriticObjectiveConfig
from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective
from maskgen.training.self_guidance import SelfGuidanceObjective, SelfGuidanceObjectiveConfig
from maskgen.training.trainer import seeded


def ctx(b, step=0):
    return StepContext(step=step, rng=torch.Generator().manual_seed(100 + step), rows=slice(0, b), global_batch=b)


class FixedLogits(torch.nn.Module):
    """A stand-in generator: fixed logits, records what the objective fed it (tokens and t)."""

    def __init__(self, logits):
        super().__init__()
        self.fixed = logits

    def forward(self, tokens, labels, t=None):
        self.inputs, self.t = tokens.clone(), t.clone()
        return self.fixed


def hand_losses(logits, tokens, masked, t):
    """Per-image masked cross-entropy sum, computed with numpy."""
    lg = logits.double().numpy()
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, tokens.numpy()[..., None], -1)[..., 0]
    return (ce * masked.numpy()).sum(1), masked.numpy().sum(1), t.double().numpy()


@pytest.mark.parametrize("masking", ["count", "bernoulli"])
def test_weightings_against_hand_computation(masking):
    b, n, k = 6, 16, 5
    g = torch.Generator().manual_seed(0)
    logits, tokens = torch.randn(b, n, k, generator=g), torch.randint(0, k, (b, n), generator=g)
    losses = {}
    for weighting in ("one", "elbo", "per-image"):
        model = FixedLogits(logits)
        obj = MaskedTokenObjective(MaskedObjectiveConfig(schedule="linear", masking=masking, weighting=weighting, cond_drop=0.0), k, 3, timestep_input=True)
        loss, _ = obj(model, (tokens, torch.zeros(b, dtype=torch.long)), ctx(b))
        sums, counts, t = hand_losses(logits, tokens, model.inputs == k, model.t)
        losses[weighting] = loss.item()
        expected = {
            "one": np.mean(sums / n),  # eMIGM Eq. 7 with w = 1 (divided by the constant N)
            "elbo": np.mean((1.0 / t) * sums / n),  # linear schedule: gamma'/gamma = 1/t
            "per-image": np.mean(sums / np.maximum(counts, 1)),
        }[weighting]
        assert loss.item() == pytest.approx(expected, rel=1e-5)
    # the old `one` (a per-image mean) is not the paper's w = 1
    assert losses["one"] != pytest.approx(losses["per-image"], rel=1e-3)


def test_t_is_uniform_on_t_min_to_one():
    obj = MaskedTokenObjective(MaskedObjectiveConfig(t_min=0.2), 16, 3)
    t = obj.sample_times(ctx(20000)).numpy()
    assert t.min() >= 0.2 and t.max() <= 1.0
    assert stats.kstest(t, stats.uniform(loc=0.2, scale=0.8).cdf).pvalue > 1e-3
    assert np.mean(t == 0.2) == 0.0  # no point mass


def test_t_clamp_is_emigm_code():
    obj = MaskedTokenObjective(MaskedObjectiveConfig(t_min=0.2, t_sampling="clamp"), 16, 3)
    t = obj.sample_times(ctx(20000)).numpy()
    at_min = np.mean(t == 0.2)
    assert abs(at_min - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20000)  # P(U < 0.2) = 0.2
    rest = t[t > 0.2]
    assert stats.kstest(rest, stats.uniform(loc=0.2, scale=0.8).cdf).pvalue > 1e-3


def etm_generator(schedule):
    torch.manual_seed(0)
    return MaskedTransformer(GeneratorConfig(codebook_size=16, grid=(4, 4), num_classes=3, width=32, depth=1, heads=2, timestep_input=True, time_schedule=schedule)).eval()


def record_times(generator):
    seen = []
    orig = generator.forward

    def forward(tokens, labels, t=None, top_down=None):
        seen.append((tokens.clone(), None if t is None else t.clone()))
        return orig(tokens, labels, t, top_down)

    generator.forward = forward
    return seen


def test_critic_feeds_the_generator_its_own_time():
    # generator trained on the cosine schedule, critic masking with the linear one: the
    # generator must read t_gen with cos(pi/2 (1 - t_gen)) = gamma_critic = t_critic
    gen = etm_generator("cosine")
    seen = record_times(gen)
    obj = CriticObjective(CriticObjectiveConfig(schedule="linear", cond_drop=0.0), gen)
    tokens = torch.randint(0, 16, (64, 16))
    _, mask, _ = obj.corrupt(tokens, torch.zeros(64, dtype=torch.long), ctx(64))
    (inputs, t_gen), = seen
    masked_frac = (inputs == 16).double().mean(1)
    gamma_of_t = torch.cos(math.pi / 2 * (1 - t_gen.double()))
    # count masking: ceil(N gamma) masked, so gamma lies within 1/N below the masked fraction
    assert ((masked_frac - gamma_of_t) >= -1e-5).all() and ((masked_frac - gamma_of_t) < 1 / 16 + 1e-5).all()
    assert not torch.allclose(t_gen.double(), masked_frac, atol=0.05)  # the old code fed the mask fraction


def test_self_guidance_feeds_the_generator_its_own_time():
    gen = etm_generator("linear")
    seen = record_times(gen)
    obj = SelfGuidanceObjective(SelfGuidanceObjectiveConfig(task="aux", schedule="cosine", cond_drop=0.0), gen)
    tokens = torch.randint(0, 16, (32, 16))
    mask = torch.zeros(32, 16, dtype=torch.bool)
    obj.corrupt(tokens, torch.zeros(32, dtype=torch.long), mask, ctx(32))
    (blank, t_blank), = seen
    assert (blank == 16).all() and torch.allclose(t_blank, torch.ones(32))  # blank canvas: t = 1 in any schedule
    # the generator's time for a cosine masked fraction g is g itself under its linear schedule
    t = gen.time_input(torch.tensor([0.25, 0.5]), 2, "cpu")
    assert torch.allclose(t, torch.tensor([0.25, 0.5]))
    # the fine-tuning step itself: its first pass reads the generator's time for the masked fraction
    from maskgen.models.toast import ToastModule

    runs = []
    run = gen.run

    def spy_run(tokens, labels, t=None, *a, **kw):
        if kw.get("hidden"):  # the first (strong) pass; the blank passes go through forward
            runs.append((tokens.clone(), t.clone()))
        return run(tokens, labels, t, *a, **kw)

    gen.run = spy_run
    obj(ToastModule.for_generator(gen), (tokens, torch.zeros(32, dtype=torch.long)), ctx(32))
    (z, t_first), = runs
    masked_frac = (z == 16).double().mean(1)  # count masking: ceil(N gamma_cos(t)) / N
    gap = masked_frac - t_first.double()  # linear generator: its t is gamma_cos(t) itself
    assert ((gap >= -1e-5) & (gap < 1 / 16 + 1e-5)).all()
    cos_gen = etm_generator("cosine")
    t = cos_gen.time_input(torch.tensor([0.5]), 1, "cpu")
    assert float(t) == pytest.approx(1 - 2 / math.pi * math.acos(0.5), abs=1e-6)  # cos(pi/2 (1-t)) = 0.5


def test_seed_sets_every_initial_weight():
    def build():
        return MaskedTransformer(GeneratorConfig(codebook_size=16, grid=(4, 4), num_classes=3, width=32, depth=1, heads=2))

    a = seeded(7, build)
    torch.rand(100)  # whatever ran before must not matter
    b = seeded(7, build)
    c = seeded(8, build)
    for (k, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(x, y), k
    assert any(not torch.equal(x, z) for x, z in zip(a.state_dict().values(), c.state_dict().values()))


def test_same_seed_same_run(model_dir, tmp_path):
    from maskgen.checkpoint import load_tensors
    from maskgen.cli import main

    tok = str(model_dir.parent / "tok")
    args = ["--data", "embedded", "--tokenizer", tok, "--steps", "1", "--batch-size", "8", "--width", "32", "--depth", "1", "--heads", "2"]
    weights = []
    for i, seed in enumerate((3, 3, 4)):
        torch.manual_seed(i)  # the global RNG differs between the runs
        assert main(["train", *args, "--seed", str(seed), "--out", str(tmp_path / f"g{i}")]) == 0
        assert main(["train-critic", "--model", str(tmp_path / f"g{i}"), "--steps", "1", "--batch-size", "8", "--heldout", "8", "--seed", str(seed), "--width", "32", "--depth", "1", "--heads", "2"]) == 0
        weights.append({**load_tensors(tmp_path / f"g{i}" / "generator.safetensors"), **{f"critic.{k}": v for k, v in load_tensors(tmp_path / f"g{i}" / "critic" / "critic.safetensors").items()}})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
