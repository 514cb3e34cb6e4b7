"""The joint image+segmentation generator as the loop sees it (``denoiser.py``'s contract).

A ``JointTransformer`` (``models/joint.py``) is a ``MaskedTransformer`` with per-modality
vocabularies, so the discrete denoiser's draw, placement and re-masking apply unchanged;
two things differ:

- The time an explicit-timestep model reads is its modalities' own (``token_times``, read
  from the state), not the loop's: a given modality sits at t = 0 while the other runs
  down its schedule.
- The condition is the other modality, not a class (Discrete Interpolants, Hu & Ommer
  2025, Sec. 3.5, Eq. 6). The joint model has one class (0); class 1, the "unconditional"
  label every CFG weak branch feeds, is read as "the condition dropped": in those rows
  every modality with no masked position (the given one) is fully masked, what the
  training's condition dropout showed the network. So ``--cfg S`` with ``--given image``
  guides the segmentation by the image and with ``--given segmentation`` the image by the
  map, with no guidance code of its own. Sampling both modalities jointly, no modality is
  complete until the end, so the weak branch equals the strong one: CFG needs a given
  modality (``pipelines.joint.JointGen`` refuses it without one).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.joint import JointTransformer
from ..models.transformer import ForwardPass
from .denoiser import DiscreteDenoiser
from .registry import denoiser_for


@denoiser_for(JointTransformer.checkpoint_kind)
class JointDenoiser(DiscreteDenoiser):
    """``Denoiser`` over a ``JointTransformer`` (module docstring)."""

    def __init__(self, network: JointTransformer):
        super().__init__(network)
        self.slices = list(network.config.slices().values())

    def condition(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Rows labelled with the null class get their complete modalities masked; every row
        then reads class 0."""
        drop = labels == self.null_class
        if drop.any():
            x = x.clone()
            for where in self.slices:
                complete = drop & ~(x[:, where] == self.mask_id).any(1)
                x[complete, where] = self.mask_id
        return x, torch.zeros_like(labels)

    def forward(self, x: Tensor, labels: Tensor, gamma: Tensor, needs: frozenset[str] = frozenset()) -> ForwardPass:
        x, labels = self.condition(x, labels)
        t = self.network.token_times(x)
        if needs:
            return self.network.run(x, labels, t, hidden="hidden" in needs, saliency="saliency" in needs)
        return ForwardPass(self.network(x, labels, t))

    def logits(self, x: Tensor, labels: Tensor | None, gamma: Tensor) -> Tensor:
        x, labels = self.condition(x, labels if labels is not None else torch.zeros(len(x), dtype=torch.long, device=x.device))
        return self.network(x, labels, self.network.token_times(x))

    def time(self, gamma: Tensor) -> Tensor | None:
        if self.network.config.timestep_input:
            raise MaskgenError("an explicit-timestep joint model reads a time per modality from the tokens; a module fed one time per row (self-guidance) cannot drive it")
        return None

    def check_state(self, x: Tensor) -> None:
        super().check_state(x)
        c = self.network.config
        for name, where in c.slices().items():
            part = x[:, where]
            codes = c.vocab()[name]
            bad = (part != c.mask_id) & ((part < codes.start) | (part >= codes.stop))
            if bad.any():
                raise MaskgenError(f"{name} positions must hold ids {codes.start}..{codes.stop - 1} or the mask id {c.mask_id}")
