import math

import pytest
import torch

from conftest import tiny_generator
from maskgen.errors import MaskgenError
from maskgen.sampling.draw import TokenDraw
from maskgen.sampling.fill import ConfidenceFill, Step, make_fill
from maskgen.sampling.guidance import ClassifierFreeGuidance, GuidanceScale
from maskgen.sampling.loop import Sampler
from maskgen.schedules import get_schedule

LABELS = torch.tensor([0, 1, 2, 0])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def cfg(model, scale, **kw):
    return [ClassifierFreeGuidance(GuidanceScale(scale, **kw), model.null_class)]


@pytest.mark.parametrize("fill", ["confidence", "ancestral", "flow"])
@pytest.mark.parametrize("steps", [1, 3, 8, 40])
@pytest.mark.parametrize("schedule", ["cosine", "linear", "exp"])
def test_no_mask_left(generator, fill, steps, schedule):
    r = Sampler(generator, make_fill(fill), steps=steps, schedule=schedule)(LABELS, gen())
    assert not (r.tokens == generator.mask_id).any()
    assert r.tokens.min() >= 0 and r.tokens.max() < generator.config.codebook_size


@pytest.mark.parametrize("schedule", ["cosine", "linear", "arccos"])
def test_confidence_masked_count_follows_schedule(generator, schedule):
    steps, n = 6, generator.config.num_tokens
    r = Sampler(generator, make_fill("confidence"), steps=steps, schedule=schedule)(LABELS, gen())
    s = get_schedule(schedule)
    expected = [math.floor(n * float(s.gamma(1 - (i + 1) / steps))) for i in range(steps)]
    assert [row[0] for row in r.masked_per_step] == expected
    assert all(len(set(row)) == 1 for row in r.masked_per_step)


def test_ancestral_reveal_probability():
    # 002 Eq. 6: a masked token survives t -> s with probability gamma_s / gamma_t
    torch.manual_seed(0)
    n, k = 20000, 8
    x = torch.full((1, n), k)
    logp = torch.zeros(1, n, k).log_softmax(-1)
    step = Step(0, 4, 1.0, 0.75, get_schedule("cosine"))
    out = make_fill("ancestral")(x, logp, step, TokenDraw(), k, gen())
    survive = (out == k).float().mean().item()
    assert survive == pytest.approx(step.gamma_s / step.gamma_t, abs=0.015)


def test_flow_euler_reveal_probability():
    # 003 Alg. 1: reveal probability h * kappa'/(1 - kappa) = (t - s) gamma'(t) / gamma(t)
    n, k = 20000, 8
    x = torch.full((1, n), k)
    logp = torch.zeros(1, n, k).log_softmax(-1)
    sched = get_schedule("linear")
    step = Step(1, 4, 0.75, 0.5, sched)
    out = make_fill("flow")(x, logp, step, TokenDraw(), k, gen())
    assert (out != k).float().mean().item() == pytest.approx(0.25 / 0.75, abs=0.015)


def test_confidence_never_remasks_decoded_tokens(generator):
    r = Sampler(generator, make_fill("confidence"), steps=5)(LABELS, gen())
    counts = torch.tensor(r.masked_per_step)
    assert (counts.diff(dim=0) <= -1).all()


def test_same_seed_same_tokens(generator):
    s = Sampler(generator, make_fill("confidence"), steps=4, guidance=cfg(generator, 1.5))
    a, b, c = s(LABELS, gen(3)), s(LABELS, gen(3)), s(LABELS, gen(4))
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_cfg_scale_zero_equals_conditional(generator):
    plain = Sampler(generator, make_fill("confidence"), steps=4)(LABELS, gen(1))
    zero = Sampler(generator, make_fill("confidence"), steps=4, guidance=cfg(generator, 0.0))(LABELS, gen(1))
    assert torch.equal(plain.tokens, zero.tokens)
    assert plain.nfe == zero.nfe == 4


def test_cfg_combination_in_log_prob_space(generator):
    s = Sampler(generator, make_fill("confidence"), steps=4, guidance=cfg(generator, 2.0))
    x = torch.full((4, 16), generator.mask_id)
    x[:, :5] = 3
    step = Step(1, 4, 0.75, 0.5, s.schedule)
    guided, rows = s.log_probs(x, LABELS, step)
    cond = generator(x, LABELS).log_softmax(-1)
    uncond = generator(x, torch.full_like(LABELS, generator.null_class)).log_softmax(-1)
    assert rows == 8
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-5)
    # s = -1 recovers the weak (unconditional) branch
    s_neg = Sampler(generator, make_fill("confidence"), steps=4, guidance=cfg(generator, -1.0))
    assert torch.allclose(s_neg.log_probs(x, LABELS, step)[0], uncond, atol=1e-5)


def test_nfe_counts(generator):
    assert Sampler(generator, make_fill("flow"), steps=6)(LABELS, gen()).nfe == 6
    assert Sampler(generator, make_fill("flow"), steps=6, guidance=cfg(generator, 1.0))(LABELS, gen()).nfe == 12
    # interval (0.2, 0.6]: step ends s = 5/6 .. 0 -> active at s in {4/6, 3/6, 2/6}: no, 4/6 > 0.6
    r = Sampler(generator, make_fill("ancestral"), steps=6, guidance=cfg(generator, 1.0, interval=(0.2, 0.6)))(LABELS, gen())
    active = sum(0.2 < 1 - (i + 1) / 6 <= 0.6 for i in range(6))
    assert r.nfe == 6 + active == 8
    # linear ramp starts at 0: the first step costs one pass
    r = Sampler(generator, make_fill("confidence"), steps=4, guidance=cfg(generator, 1.0, ramp="linear"))(LABELS, gen())
    assert r.nfe == 7


def test_guidance_scale_schedule():
    class S:
        def __init__(self, i, total, s):
            self.index, self.total, self.s = i, total, s

    ramp = GuidanceScale(3.0, ramp="linear")
    assert [ramp.at(S(i, 4, 0.5)) for i in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert GuidanceScale(2.0, interval=(0.1, 0.3)).at(S(0, 4, 0.3)) == 2.0
    assert GuidanceScale(2.0, interval=(0.1, 0.3)).at(S(0, 4, 0.1)) == 0.0


def test_gumbel_annealing_rules():
    sched = get_schedule("cosine")
    steps = [Step(i, 4, 1 - i / 4, 1 - (i + 1) / 4, sched) for i in range(4)]
    lin = ConfidenceFill(10.0, "linear")
    comp = ConfidenceFill(10.0, "compound")
    assert [lin.noise_scale(s) for s in steps] == pytest.approx([7.5, 5.0, 2.5, 0.0])
    assert [comp.noise_scale(s) for s in steps] == pytest.approx([7.5, 3.75, 0.9375, 0.0])
    assert ConfidenceFill(10.0, "none").noise_scale(steps[0]) == 0.0


def test_token_draw_filters():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    assert torch.isinf(TokenDraw(top_k=2).log_probs(logits)[0, 0, :2]).all()
    # softmax = [0.03, 0.09, 0.24, 0.64]: p=0.6 keeps the top code, p=0.7 the top two
    assert (TokenDraw(top_p=0.6).log_probs(logits).exp()[0, 0] > 0).tolist() == [False, False, False, True]
    p = TokenDraw(top_p=0.7).log_probs(logits).exp()[0, 0]
    assert (p > 0).tolist() == [False, False, True, True]
    assert float(p.sum()) == pytest.approx(1.0)
    tokens, _ = TokenDraw(temperature=0.0)(logits.expand(1, 50, 4), gen())
    assert (tokens == 3).all()
    tokens, _ = TokenDraw(temperature=1.0, argmax_last=True)(logits.expand(1, 50, 4), gen(), last=True)
    assert (tokens == 3).all()
    tokens, _ = TokenDraw(temperature=1.0)(logits.expand(1, 500, 4), gen(), last=True)
    assert len(tokens.unique()) > 1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: TokenDraw(temperature=-1.0), "temperature"),
        (lambda m: Sampler(m, make_fill("confidence"), steps=0), "steps"),
        (lambda m: make_fill("beam"), "unknown sampler"),
        (lambda m: ConfidenceFill(annealing="cubic"), "annealing"),
        (lambda m: GuidanceScale(1.0, interval=(0.5, 0.2)), "interval"),
        (lambda m: Sampler(m, make_fill("confidence"), steps=2)(torch.tensor([0, 7]), gen()), "class id 7 out of range"),
    ],
)
def test_bad_sampler_input(generator, make, match):
    with pytest.raises(MaskgenError, match=match):
        make(generator)


def test_explicit_timestep_model_receives_t():
    m = tiny_generator(timestep_input=True)
    seen = []
    orig = m.forward

    def spy(tokens, labels, t=None, **kw):
        seen.append(t)
        return orig(tokens, labels, t, **kw)

    m.forward = spy
    Sampler(m, make_fill("flow"), steps=4)(LABELS, gen())
    assert [float(t[0]) for t in seen] == [1.0, 0.75, 0.5, 0.25]


def test_token_draw_follows_the_distribution():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3])
    logits = probs.log().expand(1, 100_000, 4)
    tokens, logp = TokenDraw()(logits, gen())
    freq = torch.bincount(tokens.flatten(), minlength=4).float() / tokens.numel()
    assert torch.allclose(freq, probs, atol=0.006)
    assert freq[1] == 0  # zero-probability codes are never drawn
    assert torch.allclose(logp.exp(), probs[tokens])
    # temperature 2 flattens: p^(1/2) renormalised
    tokens, _ = TokenDraw(temperature=2.0)(logits, gen())
    flat = probs.sqrt() / probs.sqrt().sum()
    assert torch.allclose(torch.bincount(tokens.flatten(), minlength=4).float() / tokens.numel(), flat, atol=0.006)
