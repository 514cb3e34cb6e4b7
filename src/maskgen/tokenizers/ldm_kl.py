"""LDM's KL autoencoder as a maskgen tokenizer: the published model MAR and eMIGM use, frozen.

LDM's KL-regularised autoencoder (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", App. G) has the VQGAN encoder and decoder of :mod:`.ldm`; the
encoder's ``2 * z_channels`` outputs pass a 1x1 ``quant_conv`` to the mean and log-variance
of a diagonal Gaussian posterior, and the decoder reads latents through ``post_quant_conv``.
MAR (Li et al. 2024) and eMIGM (You et al. 2025) generate its KL-16 latents (16 values per
position of a 16x16 grid at 256 px) multiplied by 0.2325; importing it
(:func:`maskgen.convert.convert_mar_vae`) lets maskgen sample their generators.

It is a :class:`~.kl.KLTokenizer` with another backbone, so everything that takes maskgen's
KL tokenizer (encoding a latent cache, training or sampling a continuous generator, the
model folder) takes it too; ``encode``, ``decode`` and ``scale`` behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..validate import number
from .kl import DiagonalGaussian, KLTokenizer
from .ldm import AutoencoderShape, Decoder, Encoder

MAR_KL16_SCALE = 0.2325
"""MAR's latent scale for KL-16 (Li et al. 2024): ``tokens = posterior * 0.2325``."""


@dataclass
class LDMKLConfig(AutoencoderShape):
    """:class:`~.ldm.AutoencoderShape` plus the latent ``scale``; the defaults are MAR's KL-16
    (``ch_mult`` (1,1,2,2,4), z 16, attention at 16 in the encoder and only in the decoder's
    middle). ``embed_dim`` is the token dimension."""

    z_channels: int = 16
    embed_dim: int = 16
    decoder_attn_resolutions: tuple[int, ...] = ()
    scale: float = MAR_KL16_SCALE

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scale = number("scale", self.scale, 0.0, lo_open=True, owner=type(self).__name__)

    @property
    def token_dim(self) -> int:
        return self.embed_dim


class LDMKLTokenizer(KLTokenizer):
    """LDM's KL autoencoder (Rombach et al. 2022) with the parameter names of its published
    checkpoints: ``encode`` gives scaled latents [B, N, d], ``decode`` takes them."""

    def __init__(self, config: LDMKLConfig | None = None) -> None:
        nn.Module.__init__(self)  # not KLTokenizer's: that would build maskgen's own backbone
        self.config = config if config is not None else LDMKLConfig()
        c = self.config
        self.encoder = Encoder(c, 2 * c.z_channels)
        self.quant_conv = nn.Conv2d(2 * c.z_channels, 2 * c.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)
        self.decoder = Decoder(c)
        self.sha256: str | None = None

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """``x`` float [B,C,H,W] in [-1,1] -> q(z|x) over unscaled latents [B, d, h, w]."""
        return DiagonalGaussian.from_moments(self.quant_conv(self.encoder(x)))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent grids [B, d, h, w] -> float images, about [-1, 1], unclamped."""
        return self.decoder(self.post_quant_conv(z))

    checkpoint_kind = "ldm_kl_tokenizer"
    config_class = LDMKLConfig
