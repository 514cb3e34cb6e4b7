# STAND-IN for the diffusion-head helper's file (branch cont only): replaced at merge; code against the interface, never these internals.
"""Stand-in diffusion head: cosine noise schedule, a small MLP head, MSE denoising loss.

The real module (MAR's SimpleMLPAdaLN, Li et al. 2024, with MSE + VB loss) replaces this
file; only the interface below is relied on elsewhere: ``CosineNoise(steps)``,
``DiffusionHead(token_dim, cond_dim, width, depth)`` with ``forward(x, t, z) -> [M, 2d]``
and ``denoising_loss(head, noise, x0, z, draws, generator) -> [M]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CosineNoise:
    """Improved-DDPM cosine schedule (Nichol & Dhariwal 2021): s = 0.008, betas capped at 0.999."""

    def __init__(self, steps: int = 1000):
        self.steps = steps
        f = lambda u: math.cos((u / steps + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(steps)], dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0)


def _time_embedding(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DiffusionHead(nn.Module):
    """x [M, d], integer-valued network time t [M], condition z [M, cond_dim] -> [M, 2d] (eps, variance)."""

    def __init__(self, token_dim: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        self.token_dim, self.width = token_dim, width
        self.input_proj = nn.Linear(token_dim, width)
        self.cond_embed = nn.Linear(cond_dim, width)
        self.time_embed = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)) for _ in range(depth))
        self.out = nn.Linear(width, 2 * token_dim)

    def forward(self, x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        h = self.input_proj(x) + self.cond_embed(z) + self.time_embed(_time_embedding(t, self.width))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def denoising_loss(head: DiffusionHead, noise: CosineNoise, x0: Tensor, z: Tensor, draws: int, generator: torch.Generator) -> Tensor:
    """Per-token MSE between the head's eps and the true noise, averaged over ``draws`` noise draws: [M]."""
    m, d = x0.shape
    x0, z = x0.repeat(draws, 1), z.repeat(draws, 1)
    t = torch.randint(0, noise.steps, (m * draws,), generator=generator, device=generator.device).to(x0.device)
    eps = torch.randn(m * draws, d, generator=generator, device=generator.device).to(x0.device, x0.dtype)
    abar = noise.alphas_cumprod.to(x0.device)[t].to(x0.dtype)[:, None]
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    out = head(xt, t.float(), z)
    return ((out[:, :d].float() - eps.float()) ** 2).mean(-1).view(draws, m).mean(0)
