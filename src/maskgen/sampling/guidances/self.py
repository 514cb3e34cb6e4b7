"""Self-guidance (Hur et al. 2024, Eq. 6): the weak branch is a TOAST module's semantically
smoothed prediction from the strong pass's hidden states."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from ..guidance import Guidance, GuidanceScale, GuidanceSpec
from ..registry import GUIDANCES, Uniform, option


@GUIDANCES.register
@dataclass
class SelfSpec(GuidanceSpec):
    """Self-guidance (Hur et al. 2024, Eq. 6) with a fine-tuned TOAST module."""

    kind: ClassVar[str] = "self"
    about: ClassVar[str] = "self-guidance"
    rank: ClassVar[float] = 3
    search: ClassVar[dict] = {"scale": Uniform(0.25, 2.5, 0.2)}
    search_rank: ClassVar[float] = 1
    module: str | None = field(default=None, metadata=option("sg_module", "self-guidance module folder (default: MODEL/self-guidance)"))  # default <model>/self-guidance

    def build(self, source):
        return SelfGuidance(self.scale_schedule(), source.self_guidance_module(self.module))


class SelfGuidance(Guidance):
    """Hur et al. 2024, Eq. 6: the weak branch is the semantically smoothed prediction of a TOAST
    module fed the strong pass's hidden states (one extra pass: NFE 2T)."""

    name = "self"
    needs = frozenset({"hidden"})

    def __init__(self, scale: GuidanceScale, module: nn.Module):
        super().__init__(scale)
        self.module = module

    def weak_logits(self, model, x, labels, gamma, strong):
        return self.module.weak_logits(model.network, strong.hidden, labels, model.time(gamma)), len(x)

    def settings(self):
        sha = getattr(self.module, "sha256", None)
        return {**super().settings(), "module_sha256": sha}
