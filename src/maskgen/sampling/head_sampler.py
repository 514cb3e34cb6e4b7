# STAND-IN for the diffusion-head helper's file (branch cont only): replaced at merge; code against the interface, never these internals.
"""Stand-in head samplers: DDPM ancestral sampling on a respaced grid, and first-order
DPM-Solver (= DDIM) for "dpm-solver". The real module replaces this file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.diffusion_head import CosineNoise

HEAD_SAMPLERS = ("ddpm", "dpm-solver")


@dataclass(frozen=True)
class HeadSampling:
    sampler: str
    steps: int
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.sampler not in HEAD_SAMPLERS:
            raise MaskgenError(f"unknown head sampler {self.sampler!r}; choose from {', '.join(HEAD_SAMPLERS)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise MaskgenError(f"head sampler steps must be an integer >= 1, got {self.steps!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature) or self.temperature <= 0:
            raise MaskgenError(f"head sampler temperature must be a finite number > 0, got {self.temperature!r}")


def sample_tokens(
    eps_fn: Callable[[Tensor, Tensor], Tensor], shape: tuple[int, int], noise: CosineNoise, how: HeadSampling, generator: torch.Generator
) -> tuple[Tensor, int]:
    def randn() -> Tensor:
        return torch.randn(shape, generator=generator, device=generator.device)

    x = randn()
    device = x.device
    grid = torch.linspace(noise.steps - 1, 0, how.steps).round().long().tolist()
    abar = noise.alphas_cumprod
    for i, step in enumerate(grid):
        prev = grid[i + 1] if i + 1 < len(grid) else -1
        a_t = float(abar[step])
        a_s = float(abar[prev]) if prev >= 0 else 1.0
        eps = eps_fn(x, torch.full((shape[0],), float(step), device=device))[:, : shape[1]].float()
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if how.sampler == "dpm-solver" or prev < 0:
            x = math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps
            continue
        beta = 1 - a_t / a_s
        mean = (math.sqrt(a_s) * beta * x0 + math.sqrt(1 - beta) * (1 - a_s) * x) / (1 - a_t)
        var = beta * (1 - a_s) / (1 - a_t)
        x = mean + how.temperature * math.sqrt(var) * randn()
    return x, how.steps
