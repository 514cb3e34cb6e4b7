"""Mask schedules gamma(t): the fraction of masked tokens at time t.

One convention for every paper: t=1 is all-masked, t=0 is clean, gamma(0)=0 and
gamma(1)=1. Schedules that 003 writes as kappa (fraction *unmasked*, 0 at noise) map by
gamma(t) = 1 - kappa(1 - t); schedules that miss 1 at t=1 (002's exp: 1 - e^-5t) are
normalised here, once, so callers never special-case them.

Sources: 002 Table 4 (linear, cosine, exp) and Appendix (log-exp); 003 Table 1 (root,
arccos, quadratic, cubic(a, b)); MaskGIT's cosine is gamma(t) = cos(pi/2 (1 - t)).
"""

from __future__ import annotations

import math
import re
from typing import Callable

import torch
from torch import Tensor

from .errors import MaskgenError


class Schedule:
    """A mask schedule gamma(t) on [0, 1] and its derivative gamma'(t).

    Subclasses define ``_gamma`` and ``_dgamma`` on raw torch tensors; this class clamps
    t to [0, 1] and gives the ELBO weight gamma'(t)/gamma(t) (002 Eq. 4, 003 Eq. 3).
    """

    name: str = "schedule"

    def _gamma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _dgamma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def gamma(self, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0.0, 1.0)
        return self._gamma(t).clamp(0.0, 1.0)

    def derivative(self, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0.0, 1.0)
        return self._dgamma(t)

    def inverse(self, gamma: Tensor | float, iterations: int = 60) -> Tensor:
        """The time t with gamma(t) = ``gamma`` (float64, by bisection: every schedule here is
        non-decreasing). Converts a masked fraction into a model's own time convention."""
        g = torch.as_tensor(gamma, dtype=torch.float64)
        lo, hi = torch.zeros_like(g), torch.ones_like(g)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            below = self.gamma(mid) < g
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return hi

    def elbo_weight(self, t: Tensor | float, max_weight: float = 1e4) -> Tensor:
        """gamma'(t) / gamma(t), capped because it diverges as t -> 0."""
        g = self.gamma(t).clamp_min(1e-12)
        return (self.derivative(t) / g).clamp(max=max_weight)

    def __call__(self, t: Tensor | float) -> Tensor:
        return self.gamma(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FunctionSchedule(Schedule):
    """A schedule from closed-form gamma and gamma' (both torch functions of t)."""

    def __init__(self, name: str, gamma: Callable[[Tensor], Tensor], dgamma: Callable[[Tensor], Tensor]):
        self.name = name
        self._g = gamma
        self._dg = dgamma

    def _gamma(self, t: Tensor) -> Tensor:
        return self._g(t)

    def _dgamma(self, t: Tensor) -> Tensor:
        return self._dg(t)


class KappaSchedule(Schedule):
    """A schedule given as 003's kappa(u) (fraction unmasked): gamma(t) = 1 - kappa(1 - t)."""

    def __init__(self, name: str, kappa: Callable[[Tensor], Tensor], dkappa: Callable[[Tensor], Tensor]):
        self.name = name
        self._k = kappa
        self._dk = dkappa

    def _gamma(self, t: Tensor) -> Tensor:
        return 1.0 - self._k(1.0 - t)

    def _dgamma(self, t: Tensor) -> Tensor:
        # d/dt [1 - kappa(1 - t)] = kappa'(1 - t)
        return self._dk(1.0 - t)


def _exp_schedule(rate: float = 5.0) -> Schedule:
    # 002's exp schedule 1 - e^{-5t} reaches only 1 - e^-5 at t=1; dividing by that keeps
    # gamma(1) = 1 exactly, which every sampler's first step relies on.
    z = 1.0 - math.exp(-rate)
    return FunctionSchedule(
        "exp",
        lambda t: (1.0 - torch.exp(-rate * t)) / z,
        lambda t: rate * torch.exp(-rate * t) / z,
    )


def _logexp_schedule(rate: float = 5.0) -> Schedule:
    c = math.exp(rate) - 1.0
    return FunctionSchedule(
        "log-exp",
        lambda t: torch.log1p(c * t) / rate,
        lambda t: c / (rate * (1.0 + c * t)),
    )


def cubic_schedule(a: float = 0.0, b: float = 0.0) -> Schedule:
    """003 Table 1 cubic kappa(u) = -2u^3 + 3u^2 + b(u^3 - u^2) + a(u^3 - 2u^2 + u) (Gat et al.)."""

    def kappa(u: Tensor) -> Tensor:
        return -2 * u**3 + 3 * u**2 + b * (u**3 - u**2) + a * (u**3 - 2 * u**2 + u)

    def dkappa(u: Tensor) -> Tensor:
        return (-6 + 3 * a + 3 * b) * u**2 + (6 - 4 * a - 2 * b) * u + a

    s = KappaSchedule(f"cubic({a:g},{b:g})", kappa, dkappa)
    return s


_HALF_PI = math.pi / 2

SCHEDULES: dict[str, Callable[[], Schedule]] = {
    "linear": lambda: FunctionSchedule("linear", lambda t: t, lambda t: torch.ones_like(t)),
    "cosine": lambda: FunctionSchedule(
        "cosine", lambda t: torch.cos(_HALF_PI * (1.0 - t)), lambda t: _HALF_PI * torch.sin(_HALF_PI * (1.0 - t))
    ),
    "arccos": lambda: KappaSchedule(
        "arccos",
        lambda u: 1.0 - torch.arccos(u.clamp(-1.0, 1.0)) / _HALF_PI,
        lambda u: 1.0 / (_HALF_PI * torch.sqrt((1.0 - u * u).clamp_min(1e-12))),
    ),
    "root": lambda: KappaSchedule(
        "root", lambda u: torch.sqrt(u), lambda u: 0.5 / torch.sqrt(u.clamp_min(1e-12))
    ),
    "quadratic": lambda: KappaSchedule("quadratic", lambda u: u * u, lambda u: 2.0 * u),
    "cubic": cubic_schedule,
    "exp": _exp_schedule,
    "log-exp": _logexp_schedule,
}

_CUBIC = re.compile(r"^cubic\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)$")
_SCALED = re.compile(r"^([0-9.eE+-]+)\s*\*\s*(.+)$")


class ScaledSchedule(Schedule):
    """factor * gamma(t): e.g. refinement that re-masks at most 60% of a finished grid (004 Sec. 4.3)."""

    def __init__(self, base: str | Schedule, factor: float):
        if not 0.0 < factor <= 1.0:
            raise MaskgenError(f"schedule factor must be in (0, 1], got {factor}")
        self.base = get_schedule(base)
        self.factor = factor
        self.name = f"{factor:g}*{self.base.name}"

    def _gamma(self, t: Tensor) -> Tensor:
        return self.factor * self.base.gamma(t)

    def _dgamma(self, t: Tensor) -> Tensor:
        return self.factor * self.base.derivative(t)


def get_schedule(name: str | Schedule) -> Schedule:
    """Look a schedule up by name: one of ``SCHEDULES``, ``cubic(a,b)`` or ``FACTOR*NAME``
    (a ``ScaledSchedule``, whose ``name`` reads back the same way)."""
    if isinstance(name, Schedule):
        return name
    key = name.strip().lower()
    m = _SCALED.match(key)
    if m:
        try:
            factor = float(m.group(1))
        except ValueError:
            raise MaskgenError(f"unknown schedule {name!r}: a scaled schedule is FACTOR*NAME, e.g. 0.6*cosine") from None
        return ScaledSchedule(m.group(2), factor)
    m = _CUBIC.match(key)
    if m:
        return cubic_schedule(float(m.group(1)), float(m.group(2)))
    if key not in SCHEDULES:
        raise MaskgenError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)} or cubic(a,b)")
    return SCHEDULES[key]()


def schedule_names() -> list[str]:
    return list(SCHEDULES)
