"""Blur guidance on the logits over the token grid (self-guidance, Hur et al. 2024, Table 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ...errors import MaskgenError
from ..guidance import Guidance, GuidanceScale, GuidanceSpec
from ..registry import GUIDANCES, finite, option


@GUIDANCES.register
@dataclass
class BlurSpec(GuidanceSpec):
    """Blur guidance on the logits over the token grid (self-guidance paper, Table 2)."""

    kind: ClassVar[str] = "blur"
    rank: ClassVar[float] = 1
    sigma: float = field(default=1.0, metadata=option("blur_sigma", "Gaussian sigma in tokens (default 1)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        finite("blur sigma", self.sigma, 1e-6)

    def build(self, source):
        return BlurGuidance(self.scale_schedule(), source.denoiser().grid, self.sigma)


def gaussian_blur_matrix(grid: tuple[int, int], sigma: float) -> Tensor:
    """[N, N] row-stochastic matrix of a separable Gaussian blur over the token grid
    (kernel truncated at 3 sigma and renormalised at the borders)."""
    def axis(n: int) -> Tensor:
        i = torch.arange(n, dtype=torch.float64)
        w = torch.exp(-0.5 * ((i[:, None] - i[None]) / sigma) ** 2) * ((i[:, None] - i[None]).abs() <= max(1.0, 3 * sigma))
        return w / w.sum(1, keepdim=True)

    h, w = grid
    return torch.kron(axis(h), axis(w)).float()


class BlurGuidance(Guidance):
    """Weak branch: the strong logits blurred over the token grid (Hur et al. 2024, Sec. 3.2, Table 2).

    A Gaussian blur of VQ token ids means nothing, but a blur of the predicted logits is a
    spatial smoothing of the prediction, the discrete analogue of blur guidance (Lee et al.).
    It costs no extra forward pass.
    """

    name = "blur"

    def __init__(self, scale: GuidanceScale, grid: tuple[int, int], sigma: float = 1.0):
        super().__init__(scale)
        if sigma <= 0:
            raise MaskgenError(f"blur sigma must be > 0, got {sigma}")
        self.sigma = sigma
        self.matrix = gaussian_blur_matrix(tuple(grid), sigma)

    def weak_logits(self, model, x, labels, gamma, strong):
        m = self.matrix.to(strong.logits.device, strong.logits.dtype)
        return torch.einsum("nm,bmk->bnk", m, strong.logits), 0

    def settings(self):
        return {**super().settings(), "sigma": self.sigma}
