"""Drawing continuous tokens from the diffusion head: MAR's respaced DDPM with temperature,
or eMIGM's DPM-Solver++ (002 Sec. 5.2).

The sampler sees the head only through ``eps_fn(x [M, d], t [M]) -> [M, 2 d]`` (eps, then
the variance interpolation v), where t is the head's network time. Guidance lives inside
``eps_fn``: classifier-free guidance (Ho & Salimans 2022) on eps, as MAR and eMIGM apply
it, runs the conditional and unconditional z on the same x and returns u + s (c - u), so
both halves of a guided pair share x and every noise draw and this module never knows
about guidance. DPM-Solver++ reads only the first d channels, so for it ``eps_fn`` may
return eps alone [M, d].

**DDPM** (Ho et al. 2020 with improved DDPM's learned-range variance, Nichol & Dhariwal 2021
Eq. 15): the chain (its first 996 steps, see ``ddpm_sample``) is respaced to ``steps``
evenly strided steps (improved DDPM
Sec. 4, "timestep respacing"), x_{t-1} = mu + temperature * sigma * n with n ~ N(0, I),
no noise at the last step. The network time is the original step index. Temperature
scales only the per-step noise (MAR, Li et al. 2024, Sec. 3.2 "temperature sampling", after
ADM; 002 Sec. 5.2).

**DPM-Solver++** (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models", Sec. 4: the ODE solved for the data prediction
x0 = (x - sigma eps) / alpha; singlestep updates as their Alg. 1, 2S, and its third-order
analogue), combined as "DPM-Solver-fast" (Lu et al. 2022, "DPM-Solver") so that exactly
``steps`` head passes are made: K = steps // 3 + 1 outer steps, orders [3] * (K - 2) +
[2, 1], [3] * (K - 1) + [1] or [3] * (K - 1) + [2] as steps % 3 is 0, 1 or 2 (8 steps:
[3, 3, 2]). The outer grid is uniform in lambda = log(alpha / sigma)
from t = 1 to t = 1 / N; the inner points of an order-k step split its lambda interval in
k equal parts. The discrete chain becomes a continuous one as eMIGM's vendored solver makes
it: log alpha is piecewise linear in t over the points t_n = (n + 1) / N, after dropping
the last steps whose lambda falls below -5.1 (the cosine chain keeps N = 996 of 1000), and
the network time is (t - 1 / N) * 1000. Temperature has no meaning for this deterministic
solver; eMIGM ignores it, ``HeadSampling`` refuses it.

Which variant maskgen runs and how it differs from eMIGM's: the same algorithm, grid,
orders, clipping and network time as eMIGM's vendored copy of Lu's ``dpm_solver_pytorch``
(``NoiseScheduleVP('discrete')``, ``dpmsolver++``, order 3, ``logSNR``, ``singlestep``,
solver type ``dpmsolver``), tested against that code run in float64. Two numerical
differences: maskgen computes the schedule and every step coefficient in float64 (eMIGM's
schedule tables and lambda round trips are float32), and it takes the inner ratios r1, r2
as exactly 1/3, 2/3 (or 1/2) where eMIGM recovers them through that round trip, so its
float32 runs round differently from ours. diffusers' ``DPMSolverSinglestepScheduler``
is a different variant: its time grid is integer training steps (uniform in the step, not
in lambda), its intermediate points are grid points, and it clips lambda only if asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.diffusion_head import GaussianChain
from ..validate import integer, number, text
from .draw import Noise, normal

EpsFn = Callable[[Tensor, Tensor], Tensor]

SAMPLERS = ("ddpm", "dpm-solver")
DEFAULT_STEPS = {"ddpm": 100, "dpm-solver": 8}
LAMBDA_MIN = -5.1  # eMIGM's (Lu's) clip of the cosine chain's noisy end


@dataclass(frozen=True)
class HeadSampling:
    """How the head draws a token.

    ``sampler``: "dpm-solver" (eMIGM's default, 002 Sec. 5.2) or "ddpm" (MAR's).
    ``steps``: head passes per token; None takes the method's own default, 8 for dpm-solver
    (eMIGM's 256px preset; its 14 goes with 128 generator steps) and 100 for ddpm (MAR).
    ``temperature``: scales DDPM's per-step noise (MAR tunes it per model); must stay 1
    with dpm-solver, which has no noise to scale.
    """

    sampler: str = "dpm-solver"
    steps: int | None = None
    temperature: float = 1.0
    chain: str = "clipped"  # ddpm: respace the first 996 steps (from 995), or "full": all 1000, from 999 as MAR's code

    def __post_init__(self) -> None:
        o = "HeadSampling"
        text("sampler", self.sampler, o)
        if self.sampler not in SAMPLERS:
            raise MaskgenError(f"unknown head sampler {self.sampler!r}; choose {' or '.join(SAMPLERS)}")
        steps = DEFAULT_STEPS[self.sampler] if self.steps is None else integer("steps", self.steps, 1, o)
        object.__setattr__(self, "steps", steps)
        temperature = number("temperature", self.temperature, 0.0, lo_open=True, owner=o)
        object.__setattr__(self, "temperature", temperature)
        if self.sampler == "dpm-solver" and temperature != 1.0:
            raise MaskgenError(f"temperature {temperature:g} has no effect with the deterministic dpm-solver head sampler; use ddpm or 1")
        if self.chain not in CHAINS:
            raise MaskgenError(f"unknown ddpm chain {self.chain!r}; choose from {', '.join(CHAINS)}")
        if self.sampler == "dpm-solver" and self.chain != "clipped":
            raise MaskgenError("the ddpm chain option applies to the ddpm head sampler; dpm-solver clips lambda itself")

    def at(self, step) -> "HeadSampling":
        """The head sampler at ``step``: the same at every step."""
        return self

    def settings(self) -> dict:
        return {"sampler": self.sampler, "steps": self.steps, "temperature": self.temperature, "chain": self.chain}


CHAINS = ("clipped", "full")


@torch.no_grad()
def sample_tokens(
    eps_fn: EpsFn,
    shape: tuple[int, int],
    noise: GaussianChain,
    how: HeadSampling,
    generator: Noise,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, int]:
    """Draw ``shape`` = (M, d) tokens from x_T ~ N(0, I) (drawn from ``generator``); return
    them and the number of ``eps_fn`` calls made (a guided ``eps_fn`` runs two head passes
    per call, on a doubled batch)."""
    m, d = shape
    x = normal((m, d), generator, device).to(dtype=dtype)
    if how.sampler == "ddpm":
        return ddpm_sample(eps_fn, x, noise, how.steps, how.temperature, generator, full_chain=how.chain == "full"), how.steps
    return dpm_solver_sample(eps_fn, x, noise, how.steps), how.steps


# -- DDPM, respaced ----------------------------------------------------------------------


def space_timesteps(steps: int, count: int) -> list[int]:
    """The ``count`` kept steps of a ``steps``-step chain, improved DDPM's even striding:
    round(i (steps - 1) / (count - 1)) accumulated as a float sum (Python's round), so the
    first (0) and last (steps - 1) step are always kept."""
    if count > steps:
        raise MaskgenError(f"ddpm head steps {count} exceed the {steps} usable steps of the noise chain")
    stride = (steps - 1) / (count - 1) if count > 1 else 1
    kept, position = [], 0.0
    for _ in range(count):
        kept.append(round(position))
        position += stride
    return kept


def respace(noise: GaussianChain, count: int, usable: int | None = None) -> tuple[GaussianChain, list[int]]:
    """The chain through the kept steps only (betas 1 - abar_k / abar_{k-1}, improved DDPM
    Sec. 4) and the original index of each of its steps, spread over the first ``usable``
    steps (default all)."""
    kept = space_timesteps(noise.steps if usable is None else usable, count)
    abar = noise.alphas_cumprod[kept]
    previous = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    return GaussianChain(1.0 - abar / previous), kept


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, x: Tensor, noise: GaussianChain, steps: int, temperature: float, generator: Noise, full_chain: bool = False) -> Tensor:
    """Ancestral sampling x_T -> x_0 on the respaced chain with the head's learned variance.

    The chain starts at the last step with lambda >= -5.1 (step 995 of the cosine chain), the
    end eMIGM's DPM-Solver clips to, not at step 999 as MAR's respacing does: at step 999
    abar is 2.4e-9, and the first respaced update multiplies the head's eps error by about
    350 (1 / sqrt(abar_999) times the posterior's x0 coefficient): the small Fashion-MNIST
    head's latents blew up from there, which MAR's far larger, longer-trained heads avoid by
    keeping that error tiny. ``full_chain`` respaces all the steps, from 999, as MAR's code
    (the ``mar`` preset)."""
    chain, kept = respace(noise, steps, None if full_chain else ClippedContinuousTime(noise).steps)
    m, d = x.shape
    for i in reversed(range(steps)):
        out = eps_fn(x, torch.full((m,), float(kept[i]), device=x.device, dtype=x.dtype)).to(x.dtype)
        if out.shape[-1] != 2 * d:
            raise MaskgenError(f"the ddpm head sampler needs eps and variance outputs ({2 * d} channels), got {out.shape[-1]}")
        eps, v = out[:, :d], out[:, d:]
        to_x, to_eps, log_std, log_std_v = ddpm_step_coefficients(chain, i)
        mean = torch.add(x * to_x, eps, alpha=-to_eps)
        if i == 0:
            return mean
        std = torch.exp(v * log_std_v + log_std)
        draw = normal((m, d), generator, x.device).to(dtype=x.dtype)
        x = torch.addcmul(mean, std, draw, value=temperature)
    return x


def ddpm_step_coefficients(chain: GaussianChain, i: int) -> tuple[float, float, float, float]:
    """Step i's update as four numbers (float64, so a step is two tensor operations, not ten):
    the posterior mean at the predicted x0 is ``to_x * x - to_eps * eps`` (Ho et al. 2020 Eq. 7
    with x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)), and the learned-range log-std (improved
    DDPM Eq. 15, halved) is ``log_std + log_std_v * v``."""
    a = float(chain.alphas_cumprod[i])
    c0, ct = float(chain.posterior_mean_coef_x0[i]), float(chain.posterior_mean_coef_xt[i])
    hi, lo = math.log(float(chain.betas[i])), float(chain.posterior_log_variance_clipped[i])
    return c0 * math.sqrt(1.0 / a) + ct, c0 * math.sqrt(1.0 / a - 1.0), 0.25 * (hi + lo), 0.25 * (hi - lo)


# -- DPM-Solver++ --------------------------------------------------------------------------


class ClippedContinuousTime:
    """The discrete chain as a continuous-time VP process on t in [1/N, 1], as DPM-Solver
    (Lu et al. 2022) treats discrete-time models: log alpha_t is piecewise linear through
    (t_n = (n + 1) / N, 0.5 log abar_n), extended linearly past the ends, with the steps
    whose lambda < ``lambda_min`` dropped first, so N = 996 for the 1000-step cosine chain."""

    def __init__(self, noise: GaussianChain, lambda_min: float = LAMBDA_MIN):
        log_alpha = 0.5 * torch.log(noise.alphas_cumprod)
        lam = log_alpha - 0.5 * torch.log(-torch.expm1(2.0 * log_alpha))
        keep = int((lam >= lambda_min).sum())
        self.log_alpha_table = log_alpha[:keep]
        self.steps = keep
        self.t_min = 1.0 / keep

    def log_alpha(self, t: float) -> float:
        n = self.steps
        u = t * n - 1.0  # position on the table's index axis
        i = min(max(math.floor(u), 0), n - 2)
        y0, y1 = float(self.log_alpha_table[i]), float(self.log_alpha_table[i + 1])
        return y0 + (u - i) * (y1 - y0)

    def alpha_sigma(self, t: float) -> tuple[float, float]:
        la = self.log_alpha(t)
        return math.exp(la), math.sqrt(-math.expm1(2.0 * la))

    def lam(self, t: float) -> float:
        la = self.log_alpha(t)
        return la - 0.5 * math.log(-math.expm1(2.0 * la))

    def inverse_lam(self, lam: float) -> float:
        """The t with lambda(t) = lam: log alpha = -0.5 log(1 + e^(-2 lam)), then the table inverted."""
        la = -0.5 * (math.log1p(math.exp(-2.0 * lam)) if lam > -20 else -2.0 * lam)
        table = self.log_alpha_table  # decreasing in t
        j = int(torch.searchsorted(-table, torch.tensor([-la], dtype=torch.float64))) - 1
        j = min(max(j, 0), self.steps - 2)
        y0, y1 = float(table[j]), float(table[j + 1])
        return (j + 1 + (la - y0) / (y1 - y0)) / self.steps

    def network_time(self, t: float) -> float:
        """eMIGM's (Lu's) model input for a discrete-time model: (t - 1/N) * 1000."""
        return (t - self.t_min) * 1000.0


def singlestep_orders(steps: int) -> list[int]:
    """DPM-Solver-fast's orders for ``steps`` passes with order 3 (they sum to ``steps``)."""
    k = steps // 3 + 1
    return {0: [3] * (k - 2) + [2, 1], 1: [3] * (k - 1) + [1], 2: [3] * (k - 1) + [2]}[steps % 3]


def solver_time_grid(time: ClippedContinuousTime, steps: int) -> list[float]:
    """The outer times, uniform in lambda from t = 1 to t = 1/N (len(orders) + 1 points)."""
    outer = len(singlestep_orders(steps))
    hi, lo = time.lam(1.0), time.lam(time.t_min)
    return [time.inverse_lam(hi + (lo - hi) * i / outer) for i in range(outer + 1)]


@torch.no_grad()
def dpm_solver_sample(eps_fn: EpsFn, x: Tensor, noise: GaussianChain, steps: int) -> Tensor:
    """Integrate the diffusion ODE from t = 1 to 1/N with ``steps`` head passes."""
    time = ClippedContinuousTime(noise)
    grid = solver_time_grid(time, steps)
    for k, order in enumerate(singlestep_orders(steps)):
        x = _singlestep(eps_fn, time, x, grid[k], grid[k + 1], order)
    return x


def _singlestep(eps_fn: EpsFn, time: ClippedContinuousTime, x: Tensor, s: float, t: float, order: int) -> Tensor:
    """One singlestep DPM-Solver++ update of order 1, 2 or 3 from s to t (Lu et al. 2022,
    DPM-Solver++; the order-1 step is DDIM, solver type "dpmsolver" for orders 2 and 3)."""
    m, d = x.shape

    def data(x_at: Tensor, at: float) -> Tensor:
        eps = eps_fn(x_at, torch.full((m,), time.network_time(at), device=x.device, dtype=x.dtype))[:, :d].to(x.dtype)
        alpha, sigma = time.alpha_sigma(at)
        return (x_at - sigma * eps) / alpha

    lam_s, lam_t = time.lam(s), time.lam(t)
    h = lam_t - lam_s
    _, sigma_s = time.alpha_sigma(s)
    alpha_t, sigma_t = time.alpha_sigma(t)
    phi_1 = math.expm1(-h)
    x0_s = data(x, s)
    if order == 1:
        return (sigma_t / sigma_s) * x - (alpha_t * phi_1) * x0_s

    def point(r: float) -> tuple[float, float, float]:
        at = time.inverse_lam(lam_s + r * h)
        return (at, *time.alpha_sigma(at))

    r1 = 0.5 if order == 2 else 1.0 / 3.0
    s1, alpha_s1, sigma_s1 = point(r1)
    x_s1 = (sigma_s1 / sigma_s) * x - (alpha_s1 * math.expm1(-r1 * h)) * x0_s
    x0_s1 = data(x_s1, s1)
    if order == 2:
        return (sigma_t / sigma_s) * x - (alpha_t * phi_1) * x0_s - (0.5 / r1) * (alpha_t * phi_1) * (x0_s1 - x0_s)
    r2 = 2.0 / 3.0
    s2, alpha_s2, sigma_s2 = point(r2)
    phi_22 = math.expm1(-r2 * h) / (r2 * h) + 1.0
    phi_2 = phi_1 / h + 1.0
    x_s2 = (sigma_s2 / sigma_s) * x - (alpha_s2 * math.expm1(-r2 * h)) * x0_s + (r2 / r1) * (alpha_s2 * phi_22) * (x0_s1 - x0_s)
    x0_s2 = data(x_s2, s2)
    return (sigma_t / sigma_s) * x - (alpha_t * phi_1) * x0_s + (1.0 / r2) * (alpha_t * phi_2) * (x0_s2 - x0_s)
