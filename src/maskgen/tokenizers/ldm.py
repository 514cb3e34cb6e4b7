"""The convolutional autoencoder of VQGAN and LDM, under the names of their published weights.

VQGAN (Esser, Rombach & Ommer 2021, "Taming Transformers for High-Resolution Image
Synthesis", Sec. 3) and LDM's autoencoders (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", App. G) share one encoder and one decoder, built
from DDPM's residual and self-attention blocks (Ho et al. 2020): per resolution level
``num_res_blocks`` residual blocks (``+ 1`` on the way up), single-head self-attention after
each block at the listed resolutions, a middle of block, attention, block at the lowest
resolution, GroupNorm with 32 groups and swish throughout. MAR's KL-16 tokenizer (Li et al.
2024) is LDM's KL autoencoder with attention left out of the decoder's up path.

What sits between encoder and decoder differs (a codebook, a Gaussian posterior); that is
:mod:`.taming_vq` and :mod:`.ldm_kl`. The modules here keep the parameter names of the
published state dicts (``down.i.block.j.norm1``, ``down.i.attn.j.q``, ``mid.block_1``,
``up.i.upsample.conv``, ``norm_out``, ...), so importing a checkpoint
(:mod:`maskgen.convert`) filters keys by prefix and renames nothing. Dropout (0 in every
published config) and the unused timestep input of the blocks are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import ConfigDict
from ..errors import MaskgenError
from ..validate import integer

GROUPS = 32
"""GroupNorm groups of every normalisation layer; channel counts must be multiples of it."""


@dataclass
class AutoencoderShape(ConfigDict):
    """Shape of a VQGAN/LDM autoencoder; the defaults are the VQGAN f16 of Esser et al. 2021.

    ``ch`` channels at full resolution, ``ch * ch_mult[i]`` at level ``i``; each level but
    the last halves the resolution, so the grid is ``image_size / 2**(len(ch_mult) - 1)``
    per side (``downsample``). Attention is placed where the published configs place it: at
    the levels whose resolution, counted from ``image_size``, is listed in
    ``encoder_attn_resolutions`` / ``decoder_attn_resolutions`` (the middle always has it).
    ``z_channels`` is the latent width the encoder ends in and the decoder starts from;
    ``embed_dim`` the width of the codes or latents the 1x1 ``quant_conv`` maps it to.
    """

    image_size: int = 256
    channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    encoder_attn_resolutions: tuple[int, ...] = (16,)
    decoder_attn_resolutions: tuple[int, ...] = (16,)
    z_channels: int = 256
    embed_dim: int = 256

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("image_size", "channels", "ch", "num_res_blocks", "z_channels", "embed_dim"):
            integer(name, getattr(self, name), 1, owner)
        self.ch_mult = _int_tuple("ch_mult", self.ch_mult, owner)
        if not self.ch_mult:
            raise MaskgenError(f"invalid {owner}: ch_mult must list at least one level")
        for m in self.ch_mult:
            if self.ch * m % GROUPS:
                raise MaskgenError(f"invalid {owner}: ch * ch_mult must be multiples of {GROUPS} (GroupNorm groups), got {self.ch} * {m}")
        if self.image_size % self.downsample:
            raise MaskgenError(f"invalid {owner}: {len(self.ch_mult)} levels downsample by {self.downsample}, which does not divide image_size {self.image_size}")
        for name in ("encoder_attn_resolutions", "decoder_attn_resolutions"):
            values = _int_tuple(name, getattr(self, name), owner)
            # a resolution the network never passes through would silently place no attention
            unknown = [r for r in values if r not in self.resolutions]
            if unknown:
                raise MaskgenError(f"invalid {owner}: {name} {unknown} not among the levels' resolutions {list(self.resolutions)}")
            setattr(self, name, values)

    @property
    def downsample(self) -> int:
        """Image side / grid side."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map side at each level, full resolution first."""
        return tuple(self.image_size >> level for level in range(len(self.ch_mult)))


def _int_tuple(name: str, value: Any, owner: str) -> tuple[int, ...]:
    """JSON gives lists; a string or a scalar is refused rather than iterated."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise MaskgenError(f"invalid {owner}: {name} must be a list of integers, got {value!r}")
    return tuple(integer(f"{name} entry", v, 1, owner) for v in value)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """(GroupNorm, swish, 3x3 conv) x 2 plus a skip, through a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1 convs for q, k, v and the output, plus a skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v = (nn.Conv2d(channels, channels, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (f(n).flatten(2).transpose(1, 2).unsqueeze(1) for f in (self.q, self.k, self.v))  # [b, 1, hw, c]
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + self.proj_out(out.squeeze(1).transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero-padding right and bottom only: the published weights were
    trained with this asymmetric pad, not the symmetric ``padding=1``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution: residual blocks (``block``), each followed by its attention block
    (``attn``) when the level has attention. The caller adds ``downsample`` or ``upsample``."""

    def __init__(self, cin: int, cout: int, blocks: int, attention: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout) for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(cout) for _ in range(blocks if attention else 0))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class Middle(nn.Module):
    """Block, attention, block at the lowest resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """Images [B, channels, S, S] in [-1, 1] -> [B, out_channels, S/f, S/f]; ``out_channels`` is
    ``z_channels`` for VQGAN and ``2 * z_channels`` (mean and log-variance) for LDM's KL."""

    def __init__(self, cfg: AutoencoderShape, out_channels: int) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        for level, (cin, cout, res) in enumerate(zip([cfg.ch, *widths], widths, cfg.resolutions)):
            stage = Level(cin, cout, cfg.num_res_blocks, res in cfg.encoder_attn_resolutions)
            if level < len(widths) - 1:
                stage.downsample = Downsample(cout)
            self.down.append(stage)
        self.mid = Middle(widths[-1])
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level, stage in enumerate(self.down):
            h = stage(h)
            if level < len(self.down) - 1:
                h = stage.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Latent grids [B, z_channels, h, w] -> images [B, channels, h*f, w*f] (unbounded floats).

    ``up[i]`` is level ``i`` as in the encoder (full resolution at 0); the decoder runs them
    from the last to the first, each with ``num_res_blocks + 1`` residual blocks."""

    def __init__(self, cfg: AutoencoderShape) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, padding=1)
        self.mid = Middle(widths[-1])
        stages: list[nn.Module] = []
        cin = widths[-1]
        for level in reversed(range(len(widths))):
            stage = Level(cin, widths[level], cfg.num_res_blocks + 1, cfg.resolutions[level] in cfg.decoder_attn_resolutions)
            if level > 0:
                stage.upsample = Upsample(widths[level])
            stages.insert(0, stage)
            cin = widths[level]
        self.up = nn.ModuleList(stages)
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], cfg.channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(range(len(self.up))):
            h = self.up[level](h)
            if level > 0:
                h = self.up[level].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
