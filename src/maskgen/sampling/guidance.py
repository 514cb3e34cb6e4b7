"""Guidance: a strong and a weak branch combined in log-probability space (self-guidance, Hur et al. 2024, Eq. 5, 6).

    log p_guided = weak + (1 + s)(strong - weak) = strong + s (strong - weak)

s = 0 gives the strong (conditional) branch, s = -1 the weak one. Several guidances
combine additively, strong + sum_g s_g (strong - weak_g), so each one alone is recovered
when the others' scales are 0. The scale follows a schedule (constant; a linear ramp
from 0 at the first step to s at the last, as in valeoai/Maskgit-pytorch; or MAR's ramp by
the revealed fraction after the step, s (N - mask_len)/N with MAR's integer count) and can be limited to a time
interval (lo, hi] of the step's end time s (eMIGM, You et al. 2025, Sec. 5.3, "CFG interval").
A guidance whose scale is 0 at a step costs no extra forward pass. The guidances themselves are
one module each in ``guidances/`` (each with its spec, registered in ``registry.GUIDANCES``);
here is what they share: the scale schedule, the weak-branch interface, the spec base
(``GuidanceSpec``) and the combination.

Weak branches differ in what they need. A *batched* one (CFG) only changes the inputs, so
it runs in the same forward pass as the strong branch. A *dependent* one is computed from
the strong pass: blur guidance smooths its logits (no extra pass), SAG re-masks the tokens
its attention finds salient and self-guidance feeds its hidden states to a TOAST module;
both then run one more pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.transformer import ForwardPass
from .counts import official_masked_counts
from .registry import PieceSpec, finite

RAMPS = ("constant", "linear", "revealed")


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
        # eMIGM's code's rule lo < s <= hi on the step's end time s (its paper prints a
        # closed interval); s = (T - i - 1) / T is exact at the grid points, so an interval
        # edge on the grid (0.3 at T = 10) is hit
        if self.interval is not None and not (self.interval[0] < step.s <= self.interval[1]):
            return 0.0
        if self.ramp == "linear":
            return self.scale * (step.index / (step.total - 1) if step.total > 1 else 1.0)
        if self.ramp == "revealed":
            # MAR (Li et al. 2024) code: cfg 1 + (cfg - 1)(N - mask_len)/N with its integer
            # mask_len after the step (clamped to >= 1, also at the last step); s = cfg - 1
            if step.size is None:
                return self.scale * (1.0 - step.gamma_s)
            mask_len = official_masked_counts(step.size, step.total, step.schedule)[step.index]
            return self.scale * (step.size - mask_len) / step.size
        return self.scale

    def settings(self) -> dict:
        return {"scale": self.scale, "ramp": self.ramp, "interval": list(self.interval) if self.interval else None}


class Guidance:
    """A weak branch. Batched ones override ``weak_inputs``, dependent ones ``weak_logits``."""

    name = "guidance"
    batched = False  # the weak input runs in the strong branch's forward pass
    needs: frozenset[str] = frozenset()  # internals of the strong pass: "hidden", "saliency"
    discrete_only = True  # reads logits or token ids of a discrete generator

    def __init__(self, scale: GuidanceScale):
        self.scale = scale

    def check(self, model) -> None:
        """Refuse, in one line, a model this guidance cannot act on."""
        if self.discrete_only and model.continuous:
            raise MaskgenError(f"{self.name} guidance needs a discrete-token generator, not {type(model).__name__}")

    def weak_inputs(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def weak_logits(self, model, x: Tensor, labels: Tensor, gamma: Tensor, strong: ForwardPass) -> tuple[Tensor, int]:
        """Weak logits [B, N, K] from the strong pass, and the network rows they cost.
        ``model`` is the sampler's denoiser (``denoiser.DiscreteDenoiser``); ``gamma`` [B]
        the masked fraction it turns into the network's time."""
        raise NotImplementedError

    def settings(self) -> dict:
        return {"guidance": self.name, **self.scale.settings()}


@dataclass
class GuidanceSpec(PieceSpec):
    """A guidance and its scale schedule (constant or linear ramp; active on lo < s <= hi)."""

    scale: float = 1.0
    ramp: str = "constant"
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        finite(f"{self.kind} guidance scale", self.scale)
        if self.interval is not None:
            self.interval = tuple(float(v) for v in self.interval)
        self.scale_schedule()  # validates

    def scale_schedule(self) -> GuidanceScale:
        return GuidanceScale(self.scale, self.ramp, self.interval)

    def build(self, source) -> Guidance:
        raise NotImplementedError


def combine(strong: Tensor, weaks: list[Tensor], scales: list[float]) -> Tensor:
    """strong + sum_g s_g (strong - weak_g), all log-probabilities."""
    if len(weaks) == 1:
        # one fused op instead of three [B, N, K] temporaries
        return torch.lerp(weaks[0], strong, 1.0 + scales[0])
    out = strong
    for weak, s in zip(weaks, scales):
        out = out + s * (strong - weak)
    return out
