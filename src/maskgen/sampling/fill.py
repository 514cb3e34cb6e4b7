"""Fill rules: which masked positions receive their drawn candidate at a step t -> s.

Every rule sees a ``Proposal`` (the state, which positions are masked, a drawn candidate
and its confidence at every position) and the step, and returns the state after the step
through the model's ``place`` / ``remask`` (``denoiser.py``), so a rule works on any model
that keeps the loop's contract. At the last step (s = 0) every rule fills every position
that is still masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..schedules import Schedule
from .draw import Noise, gumbel, uniform


@dataclass
class Proposal:
    """What a fill rule decides on at one step."""

    x: Tensor  # the state before the step
    masked: Tensor  # [B, N] bool
    candidates: Tensor  # a drawn candidate per position
    confidence: Tensor  # [B, N] its log-probability under the draw distribution
    labels: Tensor  # [B]


@dataclass
class Step:
    """Step ``index`` of ``total``, from time ``t`` to ``s`` (t=1 all masked, s=0 clean)."""

    index: int
    total: int
    t: float
    s: float
    schedule: Schedule

    @property
    def last(self) -> bool:
        return self.index == self.total - 1

    @property
    def progress(self) -> float:
        """(index + 1) / total: MaskGIT's ``ratio``."""
        return (self.index + 1) / self.total

    @property
    def gamma_t(self) -> float:
        return float(self.schedule.gamma(self.t))

    @property
    def gamma_s(self) -> float:
        return float(self.schedule.gamma(self.s))


class FillRule:
    """Tokens after a step. A rule that runs a network of its own (the Token-Critic) says
    how many rows it ran in ``rows_used``, and may start from finished tokens (``start_from``)."""

    name = "fill"
    discrete_only = False

    def __call__(self, model, p: Proposal, step: Step, generator: Noise) -> Tensor:
        raise NotImplementedError

    def temperature(self, step: Step) -> float | None:
        """A token temperature this rule imposes at ``step`` (None: the draw's own)."""
        return None

    def rows_used(self, step: Step, batch: int) -> int:
        return 0

    def check(self, model) -> None:
        from .denoiser import DiscreteDenoiser

        if self.discrete_only and not isinstance(model, DiscreteDenoiser):
            raise MaskgenError(f"the {self.name} fill rule needs a discrete-token generator, not {type(model).__name__}")

    def start_from(self, model, tokens: Tensor, labels: Tensor, step: Step, generator: Noise) -> Tensor:
        raise MaskgenError(f"the {self.name} fill rule cannot refine finished tokens; use the critic rule")

    def settings(self) -> dict:
        return {"fill": self.name}


GUMBEL_ANNEALING = ("linear", "compound", "warmup", "random", "none")


class ConfidenceFill(FillRule):
    """MaskGIT: keep the most confident draws so the masked count follows gamma(s).

    Confidence is the log-probability of the drawn token plus Gumbel noise scaled by
    ``choice_temperature * a(step)`` (the official MaskGIT decoder). Annealing ``a``:
    ``linear`` 1 - (i+1)/T, afresh each step (official MaskGIT, the default);
    ``compound`` prod_{j<=i} (1 - (j+1)/T), the cumulative decay in 000's code (its tuned
    temperatures assume it); ``warmup`` the linear rule ramped up over the first quarter
    of the steps; ``random`` ignores confidence and reveals a uniformly random subset;
    ``none`` uses the confidence alone. Decoded positions are never re-masked.

    As in the official MaskGIT decoder, at least one token stays masked until the last step
    (and at least one is revealed per step), so the rule runs all T steps even when T > N
    or floor(N gamma(s)) = 0, and its NFE is T.
    """

    name = "confidence"

    def __init__(self, choice_temperature: float, annealing: str):
        if annealing not in GUMBEL_ANNEALING:
            raise MaskgenError(f"unknown Gumbel annealing {annealing!r}; choose from {', '.join(GUMBEL_ANNEALING)}")
        if choice_temperature < 0:
            raise MaskgenError(f"choice temperature must be >= 0, got {choice_temperature}")
        self.choice_temperature = choice_temperature
        self.annealing = annealing

    @property
    def discrete_only(self) -> bool:
        # "random" never reads the confidence: with the cosine schedule it is MAR's
        # random-order rule, so it also runs a continuous-token generator (which has none)
        return self.annealing != "random"

    def check(self, model) -> None:
        from .denoiser import DiscreteDenoiser

        if self.discrete_only and not isinstance(model, DiscreteDenoiser):
            raise MaskgenError(
                "the confidence fill rule ranks token log-probabilities, which a continuous-token generator does not give; "
                "use --sampler ancestral (eMIGM) or --annealing random (MAR's random order)"
            )

    def noise_scale(self, step: Step) -> float:
        a = 1.0 - step.progress
        if self.annealing == "compound":
            a = math.prod(1.0 - (j + 1) / step.total for j in range(step.index + 1))
        elif self.annealing == "warmup":
            a *= min(1.0, (step.index + 1) / max(1, math.ceil(step.total / 4)))
        elif self.annealing == "none":
            a = 0.0
        return self.choice_temperature * a

    def __call__(self, model, p, step, generator):
        masked = p.masked
        if step.last:
            return model.place(p.x, masked, p.candidates)
        shape, device = tuple(masked.shape), masked.device
        n, remaining = shape[1], masked.sum(1)
        # still masked after the step: floor(N gamma(s)), at most one fewer than now, at least one
        target = torch.clamp(torch.minimum(torch.full_like(remaining, math.floor(n * step.gamma_s)), remaining - 1), min=1)
        if self.annealing == "random":
            confidence = uniform(shape, generator, device)
        else:
            confidence = p.confidence
            scale = self.noise_scale(step)
            if scale > 0:
                confidence = confidence + scale * gumbel(shape, generator, device)
        confidence = confidence.masked_fill(~masked, float("inf"))
        ranks = confidence.argsort(dim=1).argsort(dim=1)
        keep_masked = ranks < target[:, None]
        return model.place(p.x, masked & ~keep_masked, p.candidates)

    def settings(self):
        return {"fill": self.name, "choice_temperature": self.choice_temperature, "annealing": self.annealing}


class AncestralFill(FillRule):
    """MDM ancestral step (002 Eq. 6): each masked token is revealed independently with
    probability (gamma_t - gamma_s) / gamma_t at a random position, not by confidence."""

    name = "ancestral"

    def __call__(self, model, p, step, generator):
        gt = step.gamma_t
        prob = 1.0 if step.last or gt <= 0 else (gt - step.gamma_s) / gt
        reveal = p.masked & (uniform(tuple(p.masked.shape), generator, p.masked.device) < prob)
        return model.place(p.x, reveal, p.candidates)


class FlowEulerFill(FillRule):
    """Euler step of the discrete flow (003 Algorithm 1).

    With u_t = kappa'/(1 - kappa) (p_theta - delta_{x_t}) and step h, a masked position
    leaves the mask with probability h kappa'/(1 - kappa), which in gamma's time is
    min(1, (t - s) gamma'(t) / gamma(t)), and takes a token from p_theta. Positions still
    masked at the last step are filled there (with argmax if the draw says so).
    """

    name = "flow"

    def __call__(self, model, p, step, generator):
        if step.last:
            return model.place(p.x, p.masked, p.candidates)
        rate = float(step.schedule.derivative(step.t) / max(step.gamma_t, 1e-12))
        prob = min(1.0, (step.t - step.s) * rate)
        reveal = p.masked & (uniform(tuple(p.masked.shape), generator, p.masked.device) < prob)
        return model.place(p.x, reveal, p.candidates)
