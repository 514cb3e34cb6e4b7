"""The diffusion head's samplers (DDPM with respacing, DPM-Solver++): by hand, against the reference implementation, on Gaussians, and inside the loop."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from maskgen.errors import MaskgenError
from maskgen.models.diffusion_head import CosineNoise, DiffusionHead
from maskgen.sampling.head_sampler import (
    ClippedContinuousTime,
    HeadSampling,
    ddpm_sample,
    dpm_solver_sample,
    sample_tokens,
    singlestep_orders,
    solver_time_grid,
    space_timesteps,
)
from test_diffusion_head import gen, hand_alphas_cumprod

FIXTURE = Path(__file__).parent / "fixtures" / "dpm_solver_reference.json"


def test_respacing_follows_improved_ddpm():
    kept = space_timesteps(1000, 100)
    assert kept[:7] == [0, 10, 20, 30, 40, 50, 61] and kept[-1] == 999
    assert kept == [round(i * 999 / 99) for i in range(100)]
    assert space_timesteps(1000, 1) == [0] and space_timesteps(1000, 1000) == list(range(1000))
    # the stride is accumulated as a float sum: 10 x 49.95 lands just below 499.5
    assert space_timesteps(1000, 21)[10] == 499
    with pytest.raises(MaskgenError, match="exceed"):
        space_timesteps(1000, 1001)


def test_ddpm_steps_mean_and_variance_by_hand():
    betas, abar = hand_alphas_cumprod()
    kept = [0, 498, 995]  # space_timesteps(996, 3): the chain past lambda = -5.1 (steps 996-999) is skipped
    ab = abar[kept]
    b = 1 - ab / np.r_[1.0, ab[:-1]]
    pv = b * (1 - np.r_[1.0, ab[:-1]]) / (1 - ab)
    calls = []

    def eps_fn(x, t):
        calls.append((x.clone(), t.clone()))
        return torch.cat([stub_eps(x.numpy(), int(t[0])), torch.full_like(x, 0.6)], dim=-1)

    def stub_eps(x, i):  # the exact eps for N(0, 1) data, sqrt(1 - abar) x, plus a small bend
        return torch.tensor(np.sqrt(1 - abar[i]) * x + 0.1 * np.sqrt(abar[i]) * np.tanh(x))

    x_T = torch.randn(6, 2, generator=gen(3), dtype=torch.float64)
    g = gen(4)
    draws = torch.Generator().set_state(g.get_state())  # one N(0, I) [M, d] per noisy step
    out = ddpm_sample(eps_fn, x_T, CosineNoise(), 3, 0.5, g)
    assert [float(t[0]) for _, t in calls] == [995.0, 498.0, 0.0]
    x = x_T.numpy()
    for i, (seen, _) in zip((2, 1, 0), calls):
        np.testing.assert_allclose(seen.numpy(), x, rtol=1e-9, atol=1e-9)
        eps = np.sqrt(1 - ab[i]) * x + 0.1 * np.sqrt(ab[i]) * np.tanh(x)
        x0 = (x - np.sqrt(1 - ab[i]) * eps) / np.sqrt(ab[i])
        ab_prev = ab[i - 1] if i > 0 else 1.0
        mean = b[i] * np.sqrt(ab_prev) / (1 - ab[i]) * x0 + (1 - ab_prev) * np.sqrt(1 - b[i]) / (1 - ab[i]) * x
        if i == 0:
            x = mean
            break
        log_var = 0.8 * np.log(b[i]) + 0.2 * np.log(pv[i])  # v = 0.6: frac 0.8 towards beta
        x = mean + 0.5 * np.exp(0.5 * log_var) * torch.randn(6, 2, generator=draws).double().numpy()
    np.testing.assert_allclose(out.numpy(), x, rtol=1e-9, atol=1e-9)


# -- DPM-Solver++ ------------------------------------------------------------------------


def toy_eps(x, t_input, calls):
    """The fixture's model (see make_dpm_solver_fixture.py), written again here."""
    calls.append(float(t_input[0]))
    _, abar = hand_alphas_cumprod()
    log_abar = torch.tensor(np.log(abar))
    t_input = t_input.double()
    i = t_input.clamp(0, 998).floor().long()
    la = log_abar[i] + (t_input - i) * (log_abar[i + 1] - log_abar[i])
    ab = torch.exp(la)[:, None]
    eps = (1 - ab).sqrt() * (x - ab.sqrt() * 0.5) / (ab * 0.25 + 1 - ab)
    return eps + 0.05 * torch.sin(x + t_input[:, None] / 300.0)


def test_dpm_solver_matches_the_reference_implementation():
    ref = json.loads(FIXTURE.read_text())
    noise = CosineNoise()
    time = ClippedContinuousTime(noise)
    assert time.steps == ref["total_N"] == 996
    assert time.lam(1.0) == pytest.approx(ref["lambda_T"], abs=1e-12)
    assert time.lam(1 / 996) == pytest.approx(ref["lambda_0"], abs=1e-12)
    x_T = torch.tensor(ref["x_T"], dtype=torch.float64)
    for run in ref["runs"]:
        n = run["steps"]
        assert singlestep_orders(n) == run["orders"] and sum(run["orders"]) == n
        np.testing.assert_allclose(solver_time_grid(time, n), run["outer_times"], rtol=0, atol=1e-12)
        calls = []
        out = dpm_solver_sample(lambda x, t: toy_eps(x, t, calls), x_T, noise, n)
        np.testing.assert_allclose(calls, run["network_times"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(out.numpy(), run["x_end"], rtol=1e-8, atol=1e-8)
    assert singlestep_orders(8) == [3, 3, 2]  # eMIGM's 8-step preset


# -- both samplers on Gaussian data ------------------------------------------------------

MU = np.array([0.5, -1.0, 2.0])
SIGMA = np.array([0.5, 1.5, 0.2])
# Few-step DPM-Solver is not exact on narrow data: at 8 passes it draws std 0.16 for
# sigma 0.2 (the reference implementation draws the same), so its test data is wider.
SIGMA_SOLVER = np.array([0.7, 1.5, 1.0])


def exact_eps(x, abar, sigma=SIGMA):
    """E[eps | x_t] for x0 ~ N(MU, sigma^2) per dimension: x_t ~ N(sqrt(abar) MU, abar sigma^2 + 1 - abar)."""
    return np.sqrt(1 - abar) * (x - np.sqrt(abar) * MU) / (abar * sigma**2 + 1 - abar)


def test_ddpm_recovers_a_gaussian():
    _, abar = hand_alphas_cumprod()
    kept = [round(i * 995 / 99) for i in range(100)]  # over the 996 steps with lambda >= -5.1
    previous = dict(zip(kept[1:], kept[:-1]))

    def oracle(x, t):
        i = int(t[0])
        ab = abar[i]
        xn = x.double().numpy()
        eps = exact_eps(xn, ab)
        # the exact reverse kernel's variance, as the v in [-1, 1] of the learned range
        ab_prev = abar[previous[i]] if i in previous else 1.0
        beta = 1 - ab / ab_prev
        pv = beta * (1 - ab_prev) / (1 - ab)
        coef0 = beta * np.sqrt(ab_prev) / (1 - ab)
        var_x0 = SIGMA**2 * (1 - ab) / (ab * SIGMA**2 + 1 - ab)
        pv_clipped = pv if i != 0 else 1.0  # unused at the last step (no noise)
        frac = (np.log(pv + coef0**2 * var_x0) - np.log(pv_clipped)) / (np.log(beta) - np.log(pv_clipped))
        v = np.broadcast_to(2 * frac - 1, xn.shape)
        return torch.tensor(np.concatenate([eps, v], -1), dtype=x.dtype)

    samples, nfe = sample_tokens(oracle, (10000, 3), CosineNoise(), HeadSampling("ddpm", 100), gen(7))
    assert nfe == 100
    check_gaussian(samples)


def test_dpm_solver_recovers_a_gaussian():
    _, abar = hand_alphas_cumprod()
    half_log = 0.5 * np.log(abar[:996])

    def oracle(x, t):
        # eMIGM's network time tau = (t - 1/996) 1000 sits at position 0.996 tau of the
        # clipped chain, where log alpha is interpolated linearly
        ab = np.exp(2 * np.interp(0.996 * float(t[0]), np.arange(996), half_log))
        return torch.tensor(exact_eps(x.double().numpy(), ab, SIGMA_SOLVER), dtype=x.dtype)

    for steps in (8, 15):
        samples, nfe = sample_tokens(oracle, (10000, 3), CosineNoise(), HeadSampling("dpm-solver", steps), gen(8))
        assert nfe == steps
        check_gaussian(samples, SIGMA_SOLVER)


def check_gaussian(samples, sigma=SIGMA):
    assert samples.dtype == torch.float32
    x = samples.double().numpy()
    n = len(x)
    assert np.all(np.abs(x.mean(0) - MU) < 4 * sigma / math.sqrt(n) + 0.01)
    assert np.all(np.abs(x.std(0) / sigma - 1) < 0.06)


# -- the sampling spec and the loop's plumbing ------------------------------------------


def test_head_sampling_defaults_and_one_line_errors():
    assert HeadSampling() == HeadSampling("dpm-solver", 8, 1.0)
    assert HeadSampling("ddpm").steps == 100
    assert HeadSampling("ddpm", 50, 0.8).settings() == {"sampler": "ddpm", "steps": 50, "temperature": 0.8, "chain": "clipped"}
    bad = [
        (dict(sampler="ddim"), "unknown head sampler"),
        (dict(sampler=3), "sampler must be a string"),
        (dict(sampler="ddpm", steps=0), "steps must be an integer >= 1"),
        (dict(sampler="ddpm", steps=2.5), "steps must be an integer"),
        (dict(sampler="ddpm", temperature=float("nan")), "finite"),
        (dict(sampler="ddpm", temperature=float("inf")), "finite"),
        (dict(sampler="ddpm", temperature=0.0), "temperature must be > 0"),
        (dict(sampler="ddpm", temperature=-1.0), "temperature must be > 0"),
        (dict(sampler="dpm-solver", temperature=0.9), "no effect with the deterministic dpm-solver"),
    ]
    for kwargs, message in bad:
        with pytest.raises(MaskgenError, match=message) as e:
            HeadSampling(**kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(MaskgenError, match="exceed") as e:
        sample_tokens(lambda x, t: torch.zeros(len(x), 4), (2, 2), CosineNoise(), HeadSampling("ddpm", 1001), gen())
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("how", [HeadSampling("ddpm", 10, 0.9), HeadSampling("dpm-solver", 5)])
def test_sampling_uses_only_the_generator_and_runs_a_real_head_under_autocast(how):
    torch.manual_seed(0)
    head = DiffusionHead(token_dim=4, cond_dim=6, width=16, depth=2)
    for p in head.parameters():
        nn.init.normal_(p, std=0.1)
    z = torch.randn(7, 6)
    global_state = torch.random.get_rng_state()

    def eps_fn(x, t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return head(x, t, z)

    a, nfe = sample_tokens(eps_fn, (7, 4), CosineNoise(), how, gen(11))
    b, _ = sample_tokens(eps_fn, (7, 4), CosineNoise(), how, gen(11))
    c, _ = sample_tokens(eps_fn, (7, 4), CosineNoise(), how, gen(12))
    assert torch.equal(torch.random.get_rng_state(), global_state)
    assert nfe == how.steps and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_remembered_time_embedding_follows_the_weights():
    """``DiffusionHead.time_embedding`` remembers TimeEmbedding(t) per t for samplers; it must
    not outlive a change of the weights (an optimiser step, a loaded state, a copy)."""
    torch.manual_seed(0)
    head = DiffusionHead(token_dim=4, cond_dim=6, width=8, depth=1)
    fresh = lambda: head.time_embed(torch.full((1,), 250.0))  # noqa: E731
    with torch.no_grad():
        torch.testing.assert_close(head.time_embedding(250.0, torch.device("cpu"), torch.float32), fresh())
        head.time_embed.mlp[2].weight.add_(0.5)  # in place, as AdamW updates it
        torch.testing.assert_close(head.time_embedding(250.0, torch.device("cpu"), torch.float32), fresh())
        state = {k: v + 1.0 for k, v in head.state_dict().items()}
        head.load_state_dict(state)
        torch.testing.assert_close(head.time_embedding(250.0, torch.device("cpu"), torch.float32), fresh())
        first = head.time_embed.mlp[0]
        first.weight = nn.Parameter(first.weight * 2.0)  # a new parameter object (as .to() may make)
        torch.testing.assert_close(head.time_embedding(250.0, torch.device("cpu"), torch.float32), fresh())
        assert not torch.equal(head.time_embedding(100.0, torch.device("cpu"), torch.float32), fresh())  # per t
