"""VQGAN as a maskgen tokenizer: the published taming-transformers model, frozen.

VQGAN (Esser, Rombach & Ommer 2021, "Taming Transformers for High-Resolution Image
Synthesis") maps an image to a grid of codebook indices with the convolutional encoder of
:mod:`.ldm`, a 1x1 ``quant_conv``, and the nearest code of a learned codebook (Eq. 2); the
decoder maps codes back through ``post_quant_conv``. The ImageNet f16 model with 1024 codes
is the tokenizer of MaskGIT's PyTorch reproduction (valeoai/Maskgit-pytorch), so importing
it (:func:`maskgen.convert.convert_taming_vqgan`) lets maskgen sample that generator.

This module holds the model for encoding and decoding only: the codebook's training terms
(and the swapped commitment weight of the published ``legacy`` quantizer) play no part in
inference, and the tokenizer is not trained here (maskgen's own :class:`~.vq.VQTokenizer` is).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint import Checkpointable
from ..validate import integer
from .conv import ImageGrid, to_uint8, to_unit
from .ldm import AutoencoderShape, Decoder, Encoder


@dataclass
class TamingVQConfig(AutoencoderShape):
    """:class:`~.ldm.AutoencoderShape` plus the number of codes; the defaults are the ImageNet
    VQGAN f16-1024 (256 px, 16x16 grid, codes of 256 values)."""

    codebook_size: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        integer("codebook_size", self.codebook_size, 2, type(self).__name__)


class Codebook(nn.Module):
    """The codes as an ``embedding`` table [codebook_size, embed_dim]; lookup by nearest code."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(size, dim)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, e, h, w] -> index of the nearest code by squared distance, [B, h, w]."""
        b, e, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, e)
        codes = self.embedding.weight
        # |z|^2 + |e|^2 - 2 z.e, summed in the published quantizer's order so that near-ties
        # round the same way and imported models give the same ids as the original code.
        d = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.t()
        return d.argmin(1).view(b, h, w)


class TamingVQTokenizer(nn.Module, ImageGrid, Checkpointable):
    """VQGAN (Esser et al. 2021) with the parameter names of its published checkpoints.

    ``encode`` maps uint8 images [B,C,H,W] to codes [B,h,w] (images scaled to [-1, 1] as the
    model was trained); ``decode`` maps codes [B,h,w] or [B,h*w] back to uint8 images (the
    decoder's output clamped to [-1, 1]), like :class:`~.vq.VQTokenizer`.
    """

    def __init__(self, config: TamingVQConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else TamingVQConfig()
        c = self.config
        self.encoder = Encoder(c, c.z_channels)
        self.quant_conv = nn.Conv2d(c.z_channels, c.embed_dim, 1)
        self.quantize = Codebook(c.codebook_size, c.embed_dim)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)
        self.decoder = Decoder(c)
        self.sha256: str | None = None

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` float [B,C,H,W] in [-1,1] -> the unquantized latents [B, embed_dim, h, w]."""
        return self.quant_conv(self.encoder(x))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B,h,w] (long, on this device) -> float images, about [-1, 1], unclamped."""
        q = self.quantize.embedding(codes).permute(0, 3, 1, 2)
        return self.decoder(self.post_quant_conv(q))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [B,C,H,W] -> LongTensor codes [B,h,w]."""
        self._check_images(images)
        return self.quantize.nearest(self.latents(to_unit(images.to(self._device()))))

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codes [B,h,w] or [B,h*w] -> uint8 images [B,C,H,W]."""
        return to_uint8(self.decode_codes(self._code_grid(tokens, self.codebook_size)))

    # -- persistence: ``save`` and ``load`` come from Checkpointable -----------------------------------
    checkpoint_name = "tokenizer"
    checkpoint_kind = "taming_vq_tokenizer"
    config_class = TamingVQConfig
