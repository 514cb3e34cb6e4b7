"""The unified masked objective for continuous tokens: eMIGM Eq. 7 (You et al. 2025) with the
diffusion head's denoising loss as the per-token loss (the diffusion loss of MAR, Li et al. 2024; eMIGM Sec. 5.2).

Time, schedule, masking (count or Bernoulli), weighting w(t), time truncation and
condition dropout are ``masking.MaskedObjective``'s, unchanged; only ``token_loss``
differs: the generator's ``forward`` returns the head's loss at each masked position,
averaged over ``head_draws`` noise draws (MAR's ``diffusion_batch_mul``).

The head's noise comes from a generator seeded by one draw of the step's generator plus
this process's first row, so a run is reproducible from (seed, step); unlike t, the mask
and the dropout, that noise is per process, so a DistributedDataParallel run sees other
noise than a one-process run (same distribution).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import MaskgenError
from .context import StepContext
from .masking import MaskedObjective, MaskedObjectiveConfig


class MaskedLatentObjective(MaskedObjective):
    """eMIGM Eq. 7 for ``model(latents, mask, labels, t, generator) -> per-token loss [B, N]``
    (a ``ContinuousGenerator``, possibly wrapped in DistributedDataParallel)."""

    def __init__(self, config: MaskedObjectiveConfig, null_class: int, timestep_input: bool = False):
        if config.label_smoothing:
            raise MaskgenError("label_smoothing applies to cross-entropy over codes, not to the diffusion head's loss")
        if config.weighting == "all-tokens":
            raise MaskgenError("the all-tokens weighting scores visible tokens too; the diffusion head's loss is defined on masked tokens only")
        super().__init__(config, null_class, timestep_input)
        self.timestep_input = timestep_input

    def token_loss(self, model: nn.Module, x0: Tensor, mask: Tensor, labels: Tensor, t: Tensor, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        t_in = t.float().to(x0.device) if self.timestep_input else None
        return model(x0, mask, labels, t_in, ctx.head_noise(x0.device)), {}
