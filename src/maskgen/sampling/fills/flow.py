"""Discrete Interpolants' Euler step of the discrete flow (Hu & Ommer 2025, Alg. 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...errors import MaskgenError
from ..draw import uniform
from ..fill import FillRule, Step
from ..registry import FILLS, PieceSpec, choice, option


@FILLS.register
@dataclass
class FlowSpec(PieceSpec):
    """Discrete Interpolants' Euler step (Hu & Ommer 2025, Alg. 1)."""

    kind: ClassVar[str] = "flow"
    about: ClassVar[str] = "Discrete Interpolants"
    rank: ClassVar[float] = 3
    menu: ClassVar[float] = 2
    search: ClassVar[dict] = {}
    search_rank: ClassVar[float] = 3
    loop: str = field(default="paper", metadata=option("flow_loop", "paper (Alg. 1, T passes; default) or code (the authors' loop, T - 1 passes)"))  # "code": the authors' released loop

    def __post_init__(self) -> None:
        choice("flow loop", self.loop, ("paper", "code"))

    def check_run(self, steps: int, schedule: str) -> None:
        if self.loop == "code" and steps < 2:
            raise MaskgenError("the flow rule's code loop runs T - 1 passes; give at least 2 steps")

    def build(self, source):
        return FlowEulerFill(self.loop)


FLOW_LOOPS = ("paper", "code")


class FlowEulerFill(FillRule):
    """Euler step of the discrete flow (Discrete Interpolants, Hu & Ommer 2025, Alg. 1).

    With u_t = kappa'/(1 - kappa) (p_theta - delta_{x_t}) and step h, a masked position
    leaves the mask with probability h kappa'/(1 - kappa), which in gamma's time is
    min(1, (t - s) gamma'(t) / gamma(t)), and takes a token from p_theta (both Alg. 1 as
    printed, whose kappa/(1 - kappa) is a misprint, and its authors' code use kappa').

    ``loop``: ``paper`` runs T passes from t = 1 and fills every position still masked at the
    last one (argmax if the draw says so). ``code`` is the authors' released loop: it starts
    at kappa-time 1e-4 and runs while t <= 1 - h, so T - 1 passes at gamma-times
    1 - 1e-4 - i/T; after the last pass's Euler draw, the positions still masked take the
    argmax of that pass's distribution (their ``max_last``, no extra pass) when the draw's
    ``argmax_last`` is set, else the token that pass drew (their code would leave them masked).
    """

    name = "flow"
    T_MIN = 1e-4  # the authors' code's first kappa-time

    def __init__(self, loop: str = "paper"):
        if loop not in FLOW_LOOPS:
            raise MaskgenError(f"unknown flow loop {loop!r}; choose from {', '.join(FLOW_LOOPS)}")
        self.loop = loop
        self.discrete_only = loop == "code"  # the argmax of what remains needs token logits

    def passes(self, steps: int) -> int:
        if self.loop == "code":
            if steps < 2:
                raise MaskgenError("the flow rule's code loop runs T - 1 passes; give at least 2 steps")
            return steps - 1
        return steps

    def step(self, index, steps, schedule, size=None):
        if self.loop == "paper":
            return super().step(index, steps, schedule, size)
        t = 1.0 - self.T_MIN - index / steps
        return Step(index, steps - 1, t, t - 1.0 / steps, schedule, size)

    def draws_last(self, step: Step) -> bool:
        return step.last and self.loop == "paper"

    def __call__(self, model, p, step, generator):
        if step.last and self.loop == "paper":
            return model.place(p.x, p.masked, p.candidates)
        rate = float(step.schedule.derivative(step.t) / max(step.gamma_t, 1e-12))
        prob = min(1.0, (step.t - step.s) * rate)
        reveal = p.masked & (uniform(tuple(p.masked.shape), generator, p.masked.device) < prob)
        x = model.place(p.x, reveal, p.candidates)
        if step.last:  # the code loop's end: what is still masked takes the argmax, or the drawn token
            rest = p.masked & ~reveal
            x = model.place(x, rest, p.most_likely() if p.most_likely is not None else p.candidates)
        return x

    def settings(self):
        return {"fill": self.name, "loop": self.loop}
