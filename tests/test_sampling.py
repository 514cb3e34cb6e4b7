import math

import pytest
import torch

from conftest import build_sampler, tiny_generator
from maskgen.errors import MaskgenError
from maskgen.sampling.denoiser import DiscreteDenoiser
from maskgen.sampling.draw import TokenDraw
from maskgen.sampling.fill import Proposal, Step
from maskgen.sampling.fills.ancestral import AncestralFill
from maskgen.sampling.fills.confidence import ConfidenceFill
from maskgen.sampling.fills.flow import FlowEulerFill
from maskgen.sampling.guidance import GuidanceScale
from maskgen.sampling.spec import SamplerSpec
from maskgen.schedules import get_schedule

LABELS = torch.tensor([0, 1, 2, 0])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def reveal(rule, n, k, step):
    """Run a fill rule on an all-masked row of n positions with uniform candidates."""
    x = torch.full((1, n), k)
    model = DiscreteDenoiser(tiny_generator(codebook_size=k))
    candidates = torch.zeros(1, n, dtype=torch.long)
    return rule(model, Proposal(x, x == k, candidates, torch.zeros(1, n), torch.zeros(1, dtype=torch.long)), step, gen())


@pytest.mark.parametrize("fill", ["confidence", "ancestral", "flow"])
@pytest.mark.parametrize("steps", [1, 3, 8, 40])
@pytest.mark.parametrize("schedule", ["cosine", "linear", "exp"])
def test_no_mask_left(generator, fill, steps, schedule):
    r = build_sampler(generator, sampler=fill, steps=steps, schedule=schedule)(LABELS, gen())
    assert not (r.tokens == generator.mask_id).any()
    assert r.tokens.min() >= 0 and r.tokens.max() < generator.config.codebook_size


@pytest.mark.parametrize("schedule", ["cosine", "linear", "arccos"])
def test_confidence_masked_count_follows_schedule(generator, schedule):
    steps, n = 6, generator.config.num_tokens
    r = build_sampler(generator, steps=steps, schedule=schedule)(LABELS, gen())
    s = get_schedule(schedule)
    expected = [max(1, math.floor(n * float(s.gamma((steps - i - 1) / steps)))) for i in range(steps - 1)] + [0]
    assert [row[0] for row in r.masked_per_step] == expected
    assert all(len(set(row)) == 1 for row in r.masked_per_step)


def test_ancestral_reveal_probability():
    # 002 Eq. 6: a masked token survives t -> s with probability gamma_s / gamma_t
    n, k = 20000, 8
    step = Step(0, 4, 1.0, 0.75, get_schedule("cosine"))
    out = reveal(AncestralFill(), n, k, step)
    survive = (out == k).float().mean().item()
    assert survive == pytest.approx(step.gamma_s / step.gamma_t, abs=0.015)


def ancestral_batch(rule, step, masked):
    """Run an ancestral rule on a discrete batch whose ``masked`` [B, N] positions are masked."""
    b, n, k = *masked.shape, 8
    model = DiscreteDenoiser(tiny_generator(codebook_size=k))
    x = torch.where(masked, k, 0)
    return rule(model, Proposal(x, masked, torch.zeros(b, n, dtype=torch.long), torch.zeros(b, n), torch.zeros(b, dtype=torch.long)), step, gen()) == k


def test_ancestral_equal_counts_reveal_image_0s_count_at_the_lowest_uniforms():
    # eMIGM's code: row 0's Bernoulli count k, every image its k masked positions of lowest uniform
    masked = torch.ones(4, 50, dtype=torch.bool)
    masked[1:, :10] = False  # other images have fewer masked positions
    step = Step(0, 4, 1.0, 0.75, get_schedule("cosine"))
    u = torch.rand((4, 50), generator=gen())
    prob = (step.gamma_t - step.gamma_s) / step.gamma_t
    k = int((u[0] < prob).sum())
    after = ancestral_batch(AncestralFill(equal_counts=True), step, masked)
    revealed = masked & ~after
    assert revealed.sum(1).tolist() == [k] * 4 and k > 0
    lowest = u.masked_fill(~masked, 2.0).argsort(1)[:, :k]
    assert all(set(lowest[i].tolist()) == set(revealed[i].nonzero().squeeze(1).tolist()) for i in range(4))
    independent = ancestral_batch(AncestralFill(), step, masked)
    assert len(set((masked & ~independent).sum(1).tolist())) > 1  # the default: each image its own count


def test_ancestral_reveal_one_when_no_image_reveals():
    # eMIGM's code: nothing revealed batch-wide -> one random masked position per image, the
    # floor(u M)-th in ascending order, u one more uniform per image after the reveal uniforms
    masked = torch.ones(3, 12, dtype=torch.bool)
    masked[1, ::2] = False
    masked[2, :11] = False  # a single masked position
    step = Step(0, 100, 1.0, 0.99999, get_schedule("linear"))  # probability 1e-5: nothing revealed
    g = gen()
    torch.rand((3, 12), generator=g)
    pick = (torch.rand(3, generator=g) * masked.sum(1)).floor().long()
    revealed = masked & ~ancestral_batch(AncestralFill(reveal_one=True), step, masked)
    assert revealed.sum(1).tolist() == [1, 1, 1]
    assert [int(masked[i].nonzero()[pick[i]]) for i in range(3)] == [int(revealed[i].nonzero()) for i in range(3)]
    assert not (masked & ~ancestral_batch(AncestralFill(), step, masked)).any()  # the default reveals nothing
    assert not (masked & ~ancestral_batch(AncestralFill(reveal_one=True, equal_counts=True), step, masked)).sum(1).eq(0).any()


def test_ancestral_linspace_time_grid_is_emigms():
    # eMIGM's code: t_i = torch.linspace(1.0, 1e-5, T + 1) (float32); at T = 10 the CFG interval (0.1, 0.3]
    # holds s = 0.200008 and 0.100009 (steps 7, 8), where t = (T - i)/T gives s = 0.3 and 0.2 (steps 6, 7)
    grid = torch.linspace(1.0, 1e-5, 11)
    steps = [AncestralFill(time_grid="linspace").step(i, 10, get_schedule("exp")) for i in range(10)]
    assert [(st.t, st.s) for st in steps] == [(float(grid[i]), float(grid[i + 1])) for i in range(10)]
    assert steps[-1].last and steps[-1].s == pytest.approx(1e-5)
    cfg = GuidanceScale(3.0, interval=(0.1, 0.3))
    assert [i for i, st in enumerate(steps) if cfg.at(st)] == [7, 8]
    assert [i for i in range(10) if cfg.at(AncestralFill().step(i, 10, get_schedule("exp")))] == [6, 7]


def test_flow_euler_reveal_probability():
    # 003 Alg. 1: reveal probability h * kappa'/(1 - kappa) = (t - s) gamma'(t) / gamma(t)
    n, k = 20000, 8
    step = Step(1, 4, 0.75, 0.5, get_schedule("linear"))
    assert (reveal(FlowEulerFill(), n, k, step) != k).float().mean().item() == pytest.approx(0.25 / 0.75, abs=0.015)
    # a non-linear schedule: cosine gamma = cos(pi/2 (1 - t)), gamma' = pi/2 sin(pi/2 (1 - t)),
    # so at t = 3/4, s = 1/2 the probability is 1/4 * pi/2 * tan(pi/8) = 0.16266
    step = Step(1, 4, 0.75, 0.5, get_schedule("cosine"))
    assert (reveal(FlowEulerFill(), n, k, step) != k).float().mean().item() == pytest.approx(0.16266, abs=0.01)


def test_confidence_never_remasks_decoded_tokens(generator):
    r = build_sampler(generator, steps=5)(LABELS, gen())
    counts = torch.tensor(r.masked_per_step)
    assert (counts.diff(dim=0) <= -1).all()


def test_same_seed_same_tokens(generator):
    s = build_sampler(generator, steps=4, cfg=1.5)
    a, b, c = s(LABELS, gen(3)), s(LABELS, gen(3)), s(LABELS, gen(4))
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)


def test_cfg_scale_zero_equals_conditional(generator):
    plain = build_sampler(generator, steps=4)(LABELS, gen(1))
    zero = build_sampler(generator, steps=4, cfg=0.0)(LABELS, gen(1))
    assert torch.equal(plain.tokens, zero.tokens)
    assert plain.nfe == zero.nfe == 4


def test_cfg_combination_in_log_prob_space(generator):
    s = build_sampler(generator, steps=4, cfg=2.0)
    x = torch.full((4, 16), generator.mask_id)
    x[:, :5] = 3
    step = Step(1, 4, 0.75, 0.5, s.schedule)
    strong, weaks, scales, rows = s.predict(x, LABELS, step)
    cond = generator(x, LABELS).log_softmax(-1)
    uncond = generator(x, torch.full_like(LABELS, generator.null_class)).log_softmax(-1)
    assert rows == 8 and scales == [2.0]
    draw = TokenDraw(temperature=1.0)
    _, conf = s.model.draw(strong, weaks, scales, draw, gen(5), False)
    tokens, _ = draw(uncond + 3.0 * (cond - uncond), gen(5))
    expected = (uncond + 3.0 * (cond - uncond)).log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    assert torch.allclose(conf, expected, atol=1e-4)
    # s = -1 recovers the weak (unconditional) branch
    s_neg = build_sampler(generator, steps=4, cfg=-1.0)
    strong, weaks, scales, _ = s_neg.predict(x, LABELS, step)
    _, conf = s_neg.model.draw(strong, weaks, scales, draw, gen(5), False)
    tokens, _ = draw(uncond, gen(5))
    assert torch.allclose(conf, uncond.gather(-1, tokens[..., None]).squeeze(-1), atol=1e-4)


def test_nfe_counts(generator):
    assert build_sampler(generator, sampler="flow", steps=6)(LABELS, gen()).nfe == 6
    assert build_sampler(generator, sampler="flow", steps=6, cfg=1.0)(LABELS, gen()).nfe == 12
    # interval (0.2, 0.6]: step ends s = 5/6, 4/6, 3/6, 2/6, 1/6, 0 -> active at 3/6 and 2/6
    r = build_sampler(generator, sampler="confidence", steps=6, cfg=1.0, cfg_interval=(0.2, 0.6))(LABELS, gen())
    assert r.nfe == 6 + 2
    # linear ramp starts at 0: the first step costs one pass
    r = build_sampler(generator, steps=4, cfg=1.0, cfg_ramp="linear")(LABELS, gen())
    assert r.nfe == 7


@pytest.mark.parametrize(
    "steps, active",
    [
        (10, [0.3, 0.2]),  # 1 - 7/10 is 0.30000000000000004 in floats: the edge must still count
        (16, [0.25, 0.1875, 0.125]),
        (20, [0.3, 0.25, 0.2, 0.15]),
    ],
)
def test_cfg_interval_hits_grid_points(generator, steps, active):
    s = build_sampler(generator, sampler="confidence", steps=steps, cfg=1.0, cfg_interval=(0.1, 0.3))
    on = [s.step(i).s for i in range(steps) if s.guidance[0].scale.at(s.step(i)) != 0.0]
    assert on == active
    # rows actually run: one per step plus one per active step (the confidence rule runs all T)
    assert s(LABELS, gen()).nfe == steps + len(active)


def test_confidence_rule_runs_every_step_when_t_exceeds_n():
    m = tiny_generator(grid=(2, 2))  # N = 4 tokens, T = 10 steps
    r = build_sampler(m, steps=10)(LABELS, gen())
    # official MaskGIT: at least one token stays masked until the last step
    assert [row[0] for row in r.masked_per_step] == [3, 2, 1, 1, 1, 1, 1, 1, 1, 0]
    assert r.nfe == 10


def test_argmax_touches_only_last_step_fills():
    m = tiny_generator()
    fixed = torch.tensor([0.6, 0.4] + [1e-9] * 14).log()  # argmax is code 0; code 1 is drawn often

    def forward(tokens, labels, t=None, top_down=None):
        return fixed.expand(len(tokens), tokens.shape[1], 16).clone()

    m.forward = forward
    s = build_sampler(m, sampler="flow", steps=4, argmax_last=True)
    before_last = {}
    rule = s.fill

    class Spy:
        def __getattr__(self, name):
            return getattr(rule, name)

        def __call__(self, model, p, step, generator):
            if step.last:
                before_last["masked"] = p.masked.clone()
            return rule(model, p, step, generator)

    s.fill = Spy()
    tokens = s(torch.zeros(64, dtype=torch.long), gen()).tokens
    last = before_last["masked"]
    assert last.any() and (~last).any()
    assert (tokens[last] == 0).all()  # argmax at the last step
    earlier = tokens[~last]
    assert (earlier == 1).float().mean() == pytest.approx(0.4, abs=0.08)  # drawn, not argmax


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
        (lambda m: build_sampler(m, steps=0), "steps"),
        (lambda m: build_sampler(m, sampler="beam"), "unknown fill rule"),
        (lambda m: ConfidenceFill(4.5, annealing="cubic"), "annealing"),
        (lambda m: GuidanceScale(1.0, interval=(0.5, 0.2)), "interval"),
        (lambda m: build_sampler(m, steps=2)(torch.tensor([0, 7]), gen()), "class id 7 out of range"),
        (lambda m: build_sampler(m, sampler="flow", choice_temperature=25.0), "choice-temperature applies to the confidence fill rule"),
        (lambda m: build_sampler(m, sampler="ancestral", annealing="compound"), "annealing applies to the confidence"),
        (lambda m: build_sampler(m, sampler="critic", temperature=0.5), "leave the draw temperature at 1"),
        (lambda m: build_sampler(m, blur_sigma=2.0), "blur-sigma applies to the blur guidance"),
        (lambda m: build_sampler(m, scale=2.0), "applies to --guidance"),
        (lambda m: build_sampler(m, cfg_interval=(0.1, 0.3)), "without --cfg"),
        (lambda m: SamplerSpec.from_dict({"steps": 4, "fill": {"kind": "flow", "choice_temperature": 3}}), "has no option 'choice_temperature'"),
        (lambda m: SamplerSpec.from_dict({"steps": 4, "stepz": 4}), "has no option 'stepz'"),
        (lambda m: build_sampler(m, cfg=float("nan")), "cfg guidance scale must be a finite number"),
        (lambda m: build_sampler(m, guidance="blur", scale=float("inf")), "blur guidance scale must be a finite number"),
        (lambda m: build_sampler(m, temperature=float("nan")), "temperature must be a finite number"),
        (lambda m: build_sampler(m, choice_temperature=float("inf")), "choice temperature must be a finite number"),
        (lambda m: build_sampler(m, sampler="critic", critic_noise=-1.0), "critic selection noise must be >= 0"),
        (lambda m: build_sampler(m, sampler="ancestral", ancestral_time_grid="cosine"), "unknown ancestral time grid 'cosine'"),
        (lambda m: SamplerSpec.from_dict({"fill": {"kind": "ancestral", "reveal_one": "yes"}}), "ancestral reveal_one must be true or false"),
        (lambda m: build_sampler(m, ancestral_equal_counts=True), "ancestral-equal-counts applies to the ancestral fill rule"),
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
    build_sampler(m, sampler="flow", steps=4, schedule="linear")(LABELS, gen())
    assert [float(t[0]) for t in seen] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    # with another sampling schedule the model still reads the time of its own (linear)
    # schedule: the masked fraction cos(pi/2 (1 - t))
    seen.clear()
    build_sampler(m, sampler="flow", steps=4, schedule="cosine")(LABELS, gen())
    assert [float(t[0]) for t in seen] == pytest.approx([math.cos(math.pi / 2 * (1 - t)) for t in (1.0, 0.75, 0.5, 0.25)], abs=1e-6)


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


def test_a_zero_scale_guidance_loads_nothing(generator):
    # the stand-in model folder has no self-guidance module: asking for it would fail
    s = build_sampler(generator, guidance="self", scale=0.0, steps=2)
    assert s.guidance == [] and s.spec.guidance[0].kind == "self"
    with pytest.raises(AssertionError, match="no self-guidance module"):
        build_sampler(generator, guidance="self", scale=1.0, steps=2)


def test_halton_order_is_the_published_sequence_and_covers_the_grid():
    """Besnier et al. 2025: rows from base 2 (1/2, 1/4, 3/4, 1/8, 5/8 ...), columns from
    base 3 (1/3, 2/3, 1/9, 4/9, 7/9 ...), scaled by the grid and floored, repeats dropped."""
    from maskgen.sampling.fills.halton import halton_order

    order = halton_order((8, 8)).tolist()
    # (4, 2), (2, 5), (6, 0), (1, 3), (5, 6) by hand from the two sequences above
    assert order[:5] == [4 * 8 + 2, 2 * 8 + 5, 6 * 8 + 0, 1 * 8 + 3, 5 * 8 + 6]
    assert sorted(order) == list(range(64))
    assert sorted(halton_order((3, 5)).tolist()) == list(range(15))


def test_halton_rule_reveals_the_next_slice_of_the_order(generator):
    from maskgen.sampling.fills.halton import halton_order

    sampler = build_sampler(generator, sampler="halton", steps=4, schedule="linear")
    res = sampler(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    # linear schedule, N = 16: 12, 8, 4, 0 still masked after each step
    assert [h[0] for h in res.masked_per_step] == [12, 8, 4, 0] and res.nfe == 4
    # the first step reveals exactly the first 4 positions of the order, in every row
    from maskgen.sampling.denoiser import DiscreteDenoiser
    from maskgen.sampling.fill import Proposal, Step
    from maskgen.sampling.fills.halton import HaltonFill
    from maskgen.schedules import get_schedule

    model = DiscreteDenoiser(generator)
    x = model.blank(2, torch.device("cpu"))
    p = Proposal(x, model.masked(x), torch.zeros(2, 16, dtype=torch.long), torch.zeros(2, 16), torch.tensor([0, 1]))
    after = HaltonFill()(model, p, Step(0, 4, 1.0, 0.75, get_schedule("linear")), torch.Generator())
    revealed = (~model.masked(after)).nonzero()[:, 1].view(2, 4).sort(dim=1).values
    # 4x4 grid: (2, 1), (1, 2), (3, 0), (0, 1) from the sequences above
    assert revealed.tolist() == [sorted([2 * 4 + 1, 1 * 4 + 2, 3 * 4 + 0, 0 * 4 + 1])] * 2
    assert halton_order(generator.config.grid)[:4].tolist() == [9, 6, 12, 1]
