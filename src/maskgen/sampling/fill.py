"""Fill rules: which masked positions receive their drawn candidate at a step t -> s.

The rules themselves are one module each in ``fills/`` (each with its spec, registered in
``registry.FILLS``); here is what they share.

Every rule sees a ``Proposal`` (the state, which positions are masked, a drawn candidate
and its confidence at every position) and the step, and returns the state after the step
through the model's ``place`` / ``remask`` (``denoiser.py``), so a rule works on any model
that keeps the loop's contract. At the last step (s = 0) every rule fills every position
that is still masked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..schedules import Schedule
from .counts import masked_after
from .draw import Noise


@dataclass
class Proposal:
    """What a fill rule decides on at one step."""

    x: Tensor  # the state before the step
    masked: Tensor  # [B, N] bool
    candidates: Tensor  # a drawn candidate per position
    confidence: Tensor  # [B, N] its log-probability under the draw distribution
    labels: Tensor  # [B]
    region: Tensor | None = None  # [B, N] bool: the positions sampling may change (None: all)
    most_likely: Callable[[], Tensor] | None = None  # the draw's mode per position, if it argmaxes the last step
    run: dict = field(default_factory=dict)  # what a rule draws once per run (Halton's roll), kept across steps

    @property
    def region_size(self) -> Tensor:
        """[B] positions to fill over the whole run: N from a blank canvas, the masked region
        when inpainting or given a modality (official MaskGIT: ``unknown_number_in_the_beginning``)."""
        if self.region is None:
            return torch.full((len(self.masked),), self.masked.shape[1], device=self.masked.device)
        return self.region.sum(1)


@dataclass
class Step:
    """Step ``index`` of ``total``, from time ``t`` to ``s`` (t=1 all masked, s=0 clean)."""

    index: int
    total: int
    t: float
    s: float
    schedule: Schedule
    size: int | None = None  # N, the positions of a blank canvas (what MAR's CFG ramp divides by)

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
    how many rows it ran in ``rows_used``, and may start from finished tokens (``start_from``)
    or predict a step itself instead of the generator (``predict``)."""

    name = "fill"
    discrete_only = False

    def __call__(self, model, p: Proposal, step: Step, generator: Noise) -> Tensor:
        raise NotImplementedError

    def passes(self, steps: int) -> int:
        """Network passes the rule takes for ``steps`` steps (T; Discrete Interpolants'
        official loop: T - 1)."""
        return steps

    def step(self, index: int, steps: int, schedule: Schedule, size: int | None = None) -> Step:
        """Pass ``index`` goes from t = (T - i)/T to s = (T - i - 1)/T (exact fractions, so an
        interval edge such as 0.3 at T = 10 is hit exactly)."""
        t, s = Fraction(steps - index, steps), Fraction(steps - index - 1, steps)
        return Step(index, self.passes(steps), float(t), float(s), schedule, size)

    def draws_last(self, step: Step) -> bool:
        """Whether the token draw treats ``step`` as the last (``argmax_last``)."""
        return step.last

    def temperature(self, step: Step) -> float | None:
        """A token temperature this rule imposes at ``step`` (None: the draw's own)."""
        return None

    def rows_used(self, step: Step, batch: int) -> int:
        return 0

    def predict(self, model, x: Tensor, labels: Tensor, step: Step, generator: Noise) -> tuple[Tensor, int] | None:
        """Logits [B, N, K] the rule makes itself at ``step`` in place of the generator's pass
        (a one-step student: ``sampling/fills/one_step.py``), and the network rows that took; None:
        the generator (and its guidances) predict, as at every step of every other rule."""
        return None

    def check(self, model) -> None:
        if self.discrete_only and model.continuous:
            raise MaskgenError(f"the {self.name} fill rule needs a discrete-token generator, not {type(model).__name__}")

    def start_from(self, model, tokens: Tensor, labels: Tensor, step: Step, generator: Noise) -> Tensor:
        raise MaskgenError(f"the {self.name} fill rule cannot refine finished tokens; use the critic rule")

    def settings(self) -> dict:
        return {"fill": self.name}


GUMBEL_ANNEALING = ("linear", "linear-inclusive", "compound", "warmup", "random", "random-order", "none")


def reveal_highest(model, p: Proposal, step: Step, priority: Tensor, counts: str = "maskgit") -> Tensor:
    """Reveal the masked positions of highest ``priority`` [B, N] so that as many stay masked
    as the ``counts`` rule says (``counts.py``; official MaskGIT's by default: floor(M gamma(s)),
    at most one fewer than now and at least one; M is the region to fill, N from a blank canvas)."""
    masked = p.masked
    target = masked_after(counts, step, p.region_size, masked.sum(1))
    ranks = priority.masked_fill(~masked, float("inf")).argsort(dim=1).argsort(dim=1)
    return model.place(p.x, masked & ~(ranks < target[:, None]), p.candidates)
