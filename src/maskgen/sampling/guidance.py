"""Guidance: a strong and a weak branch combined in log-probability space (000 Eq. 5, 6).

    log p_guided = weak + (1 + s)(strong - weak) = strong + s (strong - weak)

s = 0 gives the strong (conditional) branch, s = -1 the weak one. Several guidances
combine additively, strong + sum_g s_g (strong - weak_g), so each one alone is recovered
when the others' scales are 0. The scale follows a schedule (constant, or a linear ramp
from 0 at the first step to s at the last, as in valeoai/Maskgit-pytorch) and can be
limited to a time interval (lo, hi] of the step's end time s (002 Sec. 5, "CFG interval").
A guidance whose scale is 0 at a step costs no extra forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MaskgenError

RAMPS = ("constant", "linear")


@dataclass
class GuidanceScale:
    scale: float = 0.0
    ramp: str = "constant"
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.ramp not in RAMPS:
            raise MaskgenError(f"unknown guidance ramp {self.ramp!r}; choose from {', '.join(RAMPS)}")
        if self.interval is not None:
            lo, hi = self.interval
            if not 0.0 <= lo < hi <= 1.0:
                raise MaskgenError(f"guidance interval must satisfy 0 <= lo < hi <= 1, got ({lo}, {hi}]")
            self.interval = (float(lo), float(hi))

    def at(self, step) -> float:
        if self.interval is not None and not (self.interval[0] < step.s <= self.interval[1]):
            return 0.0
        if self.ramp == "linear":
            return self.scale * (step.index / (step.total - 1) if step.total > 1 else 1.0)
        return self.scale

    def settings(self) -> dict:
        return {"scale": self.scale, "ramp": self.ramp, "interval": list(self.interval) if self.interval else None}


class Guidance:
    """A weak branch fed through the network in the same batch as the strong one."""

    name = "guidance"

    def __init__(self, scale: GuidanceScale):
        self.scale = scale

    def weak_inputs(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def settings(self) -> dict:
        return {"guidance": self.name, **self.scale.settings()}


class ClassifierFreeGuidance(Guidance):
    """Weak branch: the same tokens with the unconditional class input (Ho & Salimans; 002, 003 Eq. 6)."""

    name = "cfg"

    def __init__(self, scale: GuidanceScale, null_class: int):
        super().__init__(scale)
        self.null_class = null_class

    def weak_inputs(self, x, labels):
        return x, torch.full_like(labels, self.null_class)


def combine(strong: Tensor, weaks: list[Tensor], scales: list[float]) -> Tensor:
    """strong + sum_g s_g (strong - weak_g), all log-probabilities."""
    if len(weaks) == 1:
        # one fused op instead of three [B, N, K] temporaries
        return torch.lerp(weaks[0], strong, 1.0 + scales[0])
    out = strong
    for weak, s in zip(weaks, scales):
        out = out + s * (strong - weak)
    return out
