"""MaskGIT's confidence rule (Chang et al. 2022): reveal the most confident draws, with annealed
Gumbel noise, so the masked count follows the schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ...errors import MaskgenError
from ..counts import COUNTS, check_counts
from ..draw import gumbel, uniform
from ..fill import GUMBEL_ANNEALING, FillRule, Step, reveal_highest
from ..registry import FILLS, LogUniform, OneOf, PieceSpec, choice, finite, option


def choice_temperature_field():
    return field(default=4.5, metadata=option("choice_temperature", "Gumbel temperature (default 4.5)"))


def annealing_field():
    return field(default="linear", metadata=option("annealing", "Gumbel annealing linear (default), linear-inclusive (valeoai v1), compound, warmup, random, none"))


def counts_field():
    return field(default="maskgit", metadata=option("counts", "reveal counts per step, maskgit (default), valeoai-v1, halton"))


def check_confidence(choice_temperature: float, annealing: str, counts: str) -> None:
    finite("choice temperature", choice_temperature, 0.0)
    choice("reveal counts", counts, COUNTS)
    if annealing in ("random", "random-order", "none") and choice_temperature != ConfidenceSpec.choice_temperature:
        raise MaskgenError(f"the choice temperature has no effect with annealing {annealing} (it scales no Gumbel noise); leave it out")


@FILLS.register
@dataclass
class ConfidenceSpec(PieceSpec):
    """MaskGIT's confidence rule (Chang et al. 2022): Gumbel temperature and its annealing."""

    kind: ClassVar[str] = "confidence"
    about: ClassVar[str] = "MaskGIT, default"
    rank: ClassVar[float] = 0
    menu: ClassVar[float] = 0
    search: ClassVar[dict] = {"choice_temperature": LogUniform(1.0, 50.0, 0.3), "annealing": OneOf(("linear", "compound"))}
    search_rank: ClassVar[float] = 0
    choice_temperature: float = choice_temperature_field()
    annealing: str = annealing_field()
    counts: str = counts_field()  # reveal counts per step (counts.py)

    def __post_init__(self) -> None:
        check_confidence(self.choice_temperature, self.annealing, self.counts)

    def brief(self) -> str:
        return f"gumbel {self.choice_temperature:g}, {self.annealing}"

    def check_run(self, steps: int, schedule: str) -> None:
        check_counts(self.counts, schedule, steps)

    def build(self, source):
        return ConfidenceFill(self.choice_temperature, self.annealing, self.counts)


class ConfidenceFill(FillRule):
    """MaskGIT: keep the most confident draws so the masked count follows gamma(s).

    Confidence is the log-probability of the drawn token plus Gumbel noise scaled by
    ``choice_temperature * a(step)`` (the official MaskGIT decoder). Annealing ``a``:
    ``linear`` 1 - (i+1)/T, afresh each step (official MaskGIT, the default);
    ``linear-inclusive`` 1 - i/(T-1), which reaches 0 at the last step (the valeoai v1
    reproduction of MaskGIT);
    ``compound`` prod_{j<=i} (1 - (j+1)/T), the cumulative decay in 000's code (its tuned
    temperatures assume it); ``warmup`` the linear rule ramped up over the first quarter
    of the steps; ``random`` ignores confidence and reveals a uniformly random subset;
    ``random-order`` likewise, in one random order per image drawn at the first step (MAR,
    Li et al. 2024: the same distribution as ``random``, MAR's draws);
    ``none`` uses the confidence alone. Decoded positions are never re-masked.

    As in the official MaskGIT decoder, at least one token stays masked until the last step
    (and at least one is revealed per step), so the rule runs all T steps even when T > N
    or floor(N gamma(s)) = 0, and its NFE is T.
    """

    name = "confidence"

    def __init__(self, choice_temperature: float, annealing: str, counts: str = "maskgit"):
        if annealing not in GUMBEL_ANNEALING:
            raise MaskgenError(f"unknown Gumbel annealing {annealing!r}; choose from {', '.join(GUMBEL_ANNEALING)}")
        if choice_temperature < 0:
            raise MaskgenError(f"choice temperature must be >= 0, got {choice_temperature}")
        self.choice_temperature = choice_temperature
        self.annealing = annealing
        self.counts = counts

    @property
    def discrete_only(self) -> bool:
        # "random" never reads the confidence: with the cosine schedule it is MAR's
        # random-order rule, so it also runs a continuous-token generator (which has none)
        return self.annealing not in ("random", "random-order")

    def check(self, model) -> None:
        if self.discrete_only and model.continuous:
            raise MaskgenError(
                "the confidence fill rule ranks token log-probabilities, which a continuous-token generator does not give; "
                "use --sampler ancestral (eMIGM) or --annealing random (MAR's random order)"
            )

    def noise_scale(self, step: Step) -> float:
        a = 1.0 - step.progress
        if self.annealing == "linear-inclusive":
            a = 1.0 - step.index / (step.total - 1) if step.total > 1 else 1.0
        elif self.annealing == "compound":
            a = math.prod(1.0 - (j + 1) / step.total for j in range(step.index + 1))
        elif self.annealing == "warmup":
            a *= min(1.0, (step.index + 1) / max(1, math.ceil(step.total / 4)))
        elif self.annealing == "none":
            a = 0.0
        return self.choice_temperature * a

    def __call__(self, model, p, step, generator):
        shape, device = tuple(p.masked.shape), p.masked.device
        if self.annealing == "random-order" and "order" not in p.run:
            p.run["order"] = uniform(shape, generator, device)  # MAR: later in the order, revealed first
        if step.last:
            return model.place(p.x, p.masked, p.candidates)
        if self.annealing == "random":
            confidence = uniform(shape, generator, device)
        elif self.annealing == "random-order":
            confidence = p.run["order"]
        else:
            confidence = p.confidence
            scale = self.noise_scale(step)
            if scale > 0:
                confidence = confidence + scale * gumbel(shape, generator, device)
        return reveal_highest(model, p, step, confidence, self.counts)

    def settings(self):
        return {"fill": self.name, "choice_temperature": self.choice_temperature, "annealing": self.annealing, "counts": self.counts}
