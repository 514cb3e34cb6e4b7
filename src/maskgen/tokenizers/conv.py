"""The convolutional encoder and decoder every maskgen tokenizer is built from.

The VQ tokenizer (van den Oord et al. 2017) and the KL autoencoder (LDM: Rombach et al.
2022, Sec. 3 and App. G) share the same image <-> latent-grid backbone and differ only in
what sits between encoder and decoder (a quantizer, or a diagonal Gaussian posterior).
Their configs share the shape fields checked by :func:`check_shape` and the widths of
:func:`stage_widths`; the encoder ends in ``out_channels`` channels per grid position and
the decoder starts from ``in_channels``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MaskgenError
from ..validate import integer

SHAPE_FIELDS = ("image_size", "channels", "downsample", "width", "num_res_blocks")


def check_shape(cfg: Any, owner: str) -> None:
    """Refuse shape fields (``SHAPE_FIELDS``) the backbone cannot be built from, in one line."""
    for name in ("image_size", "channels", "downsample", "width"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise MaskgenError(f"invalid {owner}: {name} must be a positive integer, got {v!r}")
    if cfg.downsample & (cfg.downsample - 1):
        raise MaskgenError(f"invalid {owner}: downsample must be a power of 2, got {cfg.downsample}")
    if cfg.image_size % cfg.downsample:
        raise MaskgenError(f"invalid {owner}: downsample {cfg.downsample} does not divide image_size {cfg.image_size}")
    if cfg.width % 8:
        raise MaskgenError(f"invalid {owner}: width must be a multiple of 8 (GroupNorm groups), got {cfg.width}")
    integer("num_res_blocks", cfg.num_res_blocks, 0, owner)


def stage_widths(width: int, downsample: int) -> list[int]:
    """Channels at each resolution, full to latent: ``width`` doubling per stride-2 stage, capped at 4x."""
    return [width * min(2**level, 4) for level in range(int(math.log2(downsample)) + 1)]


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1]."""
    if images.dtype != torch.uint8:
        raise MaskgenError(f"expected uint8 images, got {images.dtype}")
    return images.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in [0, 255], rounded and clamped."""
    return x.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class ImageGrid:
    """What every tokenizer built on this backbone shares: uint8 images [B, channels, S, S] in,
    a ``grid`` of ``S / downsample`` positions per side out (mixed into an ``nn.Module`` whose
    ``config`` has the :data:`SHAPE_FIELDS`)."""

    config: Any

    @property
    def grid(self) -> tuple[int, int]:
        s = self.config.image_size // self.config.downsample
        return (s, s)

    @property
    def num_tokens(self) -> int:
        h, w = self.grid
        return h * w

    def _device(self) -> torch.device:
        return next(self.parameters()).device  # type: ignore[attr-defined]

    def _check_images(self, images: torch.Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise MaskgenError(f"expected images of shape [B,{c},{s},{s}], got {list(images.shape)}")

    def _code_grid(self, tokens: torch.Tensor, codebook_size: int) -> torch.Tensor:
        """Code ids [B,h,w] or [B,h*w] -> LongTensor [B,h,w] on the module's device, refused
        in one line unless they fit the grid and lie in [0, codebook_size)."""
        h, w = self.grid
        if tokens.dim() == 2 and tokens.shape[1] == h * w:
            tokens = tokens.view(-1, h, w)
        if tokens.dim() != 3 or tuple(tokens.shape[1:]) != (h, w):
            raise MaskgenError(f"expected tokens of shape [B,{h},{w}] or [B,{h * w}], got {list(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= codebook_size):
            raise MaskgenError(f"token ids must lie in [0, {codebook_size}), got [{int(tokens.min())}, {int(tokens.max())}]")
        return tokens.to(self._device()).long()


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, 3x3 conv) x 2."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = _norm(ch), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Downsample(nn.Module):
    """(GroupNorm, SiLU) then a stride-2 3x3 conv; the activation keeps stacked stages non-linear."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(_norm(cin), nn.SiLU())
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pre(x))


class Upsample(nn.Module):
    """GroupNorm, SiLU, nearest x2, 3x3 conv: avoids the checkerboard artefacts of transposed convs."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pre = nn.Sequential(_norm(cin), nn.SiLU())
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(self.pre(x), scale_factor=2.0, mode="nearest"))


# Residual blocks sit only at the latent resolution: on CPU a block at 32x32 costs as much as
# one at 8x8 with 4x the channels, and in equal-time runs the extra steps bought by leaving the
# high resolutions to a single conv per stage won (Fashion-MNIST, ~2 min on 2 cores).
def encoder(cfg: Any, out_channels: int) -> nn.Sequential:
    """Images [B, channels, S, S] -> [B, out_channels, S/downsample, S/downsample]."""
    w = stage_widths(cfg.width, cfg.downsample)
    top = len(w) - 1
    layers: list[nn.Module] = [nn.Conv2d(cfg.channels, w[0], 3, padding=1)]
    layers += [Downsample(w[level], w[level + 1]) for level in range(top)]
    layers += [ResBlock(w[top]) for _ in range(cfg.num_res_blocks)]
    layers += [_norm(w[top]), nn.SiLU(), nn.Conv2d(w[top], out_channels, 1)]
    return nn.Sequential(*layers)


def decoder(cfg: Any, in_channels: int) -> nn.Sequential:
    """Latent grids [B, in_channels, h, w] -> images [B, channels, S, S] (unbounded floats)."""
    w = stage_widths(cfg.width, cfg.downsample)
    top = len(w) - 1
    layers: list[nn.Module] = [nn.Conv2d(in_channels, w[top], 3, padding=1)]
    layers += [ResBlock(w[top]) for _ in range(cfg.num_res_blocks)]
    layers += [Upsample(w[level + 1], w[level]) for level in reversed(range(top))]
    layers += [_norm(w[0]), nn.SiLU(), nn.Conv2d(w[0], cfg.channels, 3, padding=1)]
    return nn.Sequential(*layers)
