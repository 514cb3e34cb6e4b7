"""Self-attention guidance with re-masking (Hong et al. 2023; self-guidance, Hur et al. 2024, Table 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..guidance import Guidance, GuidanceScale, GuidanceSpec
from ..registry import GUIDANCES, finite, option


@GUIDANCES.register
@dataclass
class SAGSpec(GuidanceSpec):
    """Self-attention guidance with re-masking (self-guidance paper, Table 2)."""

    kind: ClassVar[str] = "sag"
    rank: ClassVar[float] = 2
    threshold: float = field(default=1.0, metadata=option("sag_threshold", "re-mask tokens receiving more attention than this (mean 1)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        finite("SAG threshold", self.threshold)

    def build(self, source):
        return SelfAttentionGuidance(self.scale_schedule(), source.denoiser().mask_id, self.threshold)


class SelfAttentionGuidance(Guidance):
    """SAG (Hong et al. 2023; Hur et al. 2024, Table 2) for masked tokens: adversarial masking by attention.

    The tokens that receive more than the average attention in the strong pass's last
    block (head mean, summed over queries, > 1: SAG's threshold) are the salient ones; the
    weak branch re-masks those already decoded and runs the network again.
    """

    name = "sag"
    needs = frozenset({"saliency"})

    def __init__(self, scale: GuidanceScale, mask_id: int, threshold: float = 1.0):
        super().__init__(scale)
        self.mask_id = mask_id
        self.threshold = threshold

    def weak_logits(self, model, x, labels, gamma, strong):
        salient = strong.saliency > self.threshold
        weak_x = torch.where(salient, torch.full_like(x, self.mask_id), x)
        return model.logits(weak_x, labels, gamma), len(x)

    def settings(self):
        return {**super().settings(), "threshold": self.threshold}
