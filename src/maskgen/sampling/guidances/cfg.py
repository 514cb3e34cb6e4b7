"""Classifier-free guidance (Ho & Salimans 2022): the weak branch is the unconditional input, in
the same forward pass as the strong one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..guidance import Guidance, GuidanceScale, GuidanceSpec
from ..registry import GUIDANCES, Interval, LogUniform


@GUIDANCES.register
@dataclass
class CFGSpec(GuidanceSpec):
    """Classifier-free guidance: the weak branch is the unconditional input (its scale, ramp and
    interval are the --cfg, --cfg-ramp and --cfg-interval options)."""

    kind: ClassVar[str] = "cfg"
    shorthand: ClassVar[str | None] = "cfg"
    once: ClassVar[str | None] = "classifier-free guidance"
    rank: ClassVar[float] = 0
    # tune: on or off eMIGM's interval (You et al. 2025, Sec. 5.3: (0.1, 0.3]), then the scale
    search: ClassVar[dict] = {"interval": Interval(0.4, 0.2, (0.1, 0.3)), "scale": LogUniform(0.25, 4.0, 0.2)}
    search_rank: ClassVar[float] = 0

    def build(self, source):
        return ClassifierFreeGuidance(self.scale_schedule(), source.denoiser().null_class)


class ClassifierFreeGuidance(Guidance):
    """Weak branch: the same tokens with the unconditional class input (Ho & Salimans 2022; eMIGM; Discrete Interpolants Eq. 6)."""

    name = "cfg"
    batched = True
    discrete_only = False

    def __init__(self, scale: GuidanceScale, null_class: int):
        super().__init__(scale)
        self.null_class = null_class

    def weak_inputs(self, x, labels):
        return x, torch.full_like(labels, self.null_class)
