"""A small convolutional KL autoencoder: images <-> grids of continuous latent vectors.

The model is LDM's KL-regularised autoencoder (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", Sec. 3 and App. G): the encoder predicts the mean
and log-variance of a diagonal Gaussian posterior q(z|x) per grid position, the decoder
reconstructs the image from a sample of it, and a small KL(q(z|x) || N(0, I)) term keeps the
latent space regular. MAR (Li et al. 2024) and eMIGM (You et al. 2025) generate these
latents as continuous tokens; their KL-16 tokenizer multiplies the latents by a constant
(0.2325) so that they have unit standard deviation, and divides by it before decoding.
Here that constant, ``scale``, is measured after training as 1 / std of the latents over
the training data (:func:`measure_scale`) and stored in the checkpoint's config.

The backbone is the VQ tokenizer's (:mod:`maskgen.tokenizers.conv`); only what sits between
encoder and decoder differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import Checkpointable, ConfigDict
from ..errors import MaskgenError
from ..validate import number
from .conv import ImageGrid, check_shape, decoder, encoder, to_uint8, to_unit

LOGVAR_RANGE = (-30.0, 20.0)
"""Clamp of the predicted log-variance, as in LDM's ``DiagonalGaussianDistribution``."""


@dataclass
class KLConfig(ConfigDict):
    """Shape and training constants of a :class:`KLTokenizer`.

    The shape fields mean what they mean in :class:`~maskgen.tokenizers.VQConfig`: ``width``
    channels at full resolution, doubling per stride-2 stage (capped at 4x), ``downsample``
    from image to grid (32 / 4 -> an 8x8 grid), ``num_res_blocks`` at the latent resolution.
    ``token_dim`` is the latent vector size per grid position (KL-16: 16).

    ``kl_weight`` weighs KL(q(z|x) || N(0, I)) against the reconstruction, with LDM's
    meaning: LDM sums both terms over each image; maskgen's reconstruction is a per-pixel
    mean, so the per-image KL sum is divided by the pixel count too, and the same weight
    gives the same balance (LDM's and MAR's KL-16: 1e-6). The default, 1e-3, was chosen on
    the embedded Fashion-MNIST subset: ``maskgen train-tokenizer --kind kl --data embedded
    --token-dim 8 --downsample 4 --steps 300 --batch-size 32 --lr 3e-3 --kl-weight W`` gives
    PSNR 24.51 / 24.50 / 24.09 dB for W = 1e-4 / 1e-3 / 1e-2, so 1e-3 regularises the latents
    at no cost in reconstruction.

    ``scale`` multiplies the latents ``encode`` returns and divides those ``decode`` takes
    (KL-16: 0.2325). It is 1.0 while training and set by :func:`measure_scale` afterwards.
    """

    image_size: int = 32
    channels: int = 1
    token_dim: int = 8
    downsample: int = 4
    width: int = 16
    num_res_blocks: int = 1
    kl_weight: float = 1e-3
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_shape(self, "KLConfig")
        v = self.token_dim
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise MaskgenError(f"invalid KLConfig: token_dim must be a positive integer, got {v!r}")
        self.kl_weight = number("kl_weight", self.kl_weight, 0.0, owner="KLConfig")
        self.scale = number("scale", self.scale, 0.0, lo_open=True, owner="KLConfig")


@dataclass
class DiagonalGaussian:
    """The posterior q(z|x) = N(mean, diag(exp(logvar))) over latent grids [B, d, h, w].

    LDM's ``DiagonalGaussianDistribution`` (Rombach et al. 2022): the encoder's 2d channels
    are split into mean and log-variance, and the log-variance is clamped to
    :data:`LOGVAR_RANGE` so ``exp`` neither overflows nor underflows.
    """

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> "DiagonalGaussian":
        """Encoder output [B, 2d, h, w] (mean channels first) -> the posterior, in float32 (also
        under bf16 autocast: the KL sum and exp(logvar) need the precision)."""
        mean, logvar = moments.float().chunk(2, dim=1)
        return cls(mean, logvar.clamp(*LOGVAR_RANGE))

    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        """mean + std * noise, with ``noise`` ~ N(0, I) of the mean's shape (reparameterisation)."""
        return self.mean + torch.exp(0.5 * self.logvar) * noise.to(self.mean)

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per item [B], summed over latent elements:
        0.5 * sum(mean^2 + var - 1 - logvar) (Kingma & Welling 2014, App. B)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class KLTokenizer(nn.Module, ImageGrid, Checkpointable):
    """KL autoencoder (LDM, Rombach et al. 2022) with continuous tokens of ``token_dim`` values.

    ``encode`` maps uint8 images [B,C,H,W] to scaled latents [B, N, d] (N = h*w grid positions
    in row-major order); ``decode`` maps such latents back to uint8 images; ``forward`` is the
    training path on images scaled to [-1, 1], unscaled.
    """

    def __init__(self, config: KLConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else KLConfig()
        self.encoder = encoder(self.config, 2 * self.config.token_dim)
        self.decoder = decoder(self.config, self.config.token_dim)
        self.sha256: str | None = None

    @property
    def token_dim(self) -> int:
        return self.config.token_dim

    @property
    def scale(self) -> float:
        return self.config.scale

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """``x`` float [B,C,H,W] in [-1,1] -> q(z|x) over unscaled latents [B, d, h, w]."""
        return DiagonalGaussian.from_moments(self.encoder(x))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latent grids [B, d, h, w] -> float images, about [-1, 1], unclamped."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` in [-1,1], ``noise`` N(0, I) [B, d, h, w] -> (reconstruction, KL per image [B])."""
        q = self.posterior(x)
        return self.decode_latents(q.sample(noise)), q.kl()

    @torch.no_grad()
    def encode(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 images [B,C,H,W] -> latents * scale, float32 [B, N, d].

        ``sample=False`` gives the posterior mean (deterministic); ``sample=True`` draws from
        the posterior with ``generator`` (required: never the global RNG).
        """
        self._check_images(images)
        q = self.posterior(to_unit(images.to(self._device())))
        z = q.mean
        if sample:
            if generator is None:
                raise MaskgenError("KLTokenizer.encode(sample=True) needs a torch.Generator")
            z = q.sample(torch.randn(q.mean.shape, generator=generator, device=generator.device))
        return z.flatten(2).transpose(1, 2).mul(self.config.scale)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [B, N, d] (as ``encode`` gives them) -> uint8 images [B,C,H,W]."""
        (h, w), d = self.grid, self.token_dim
        if latents.dim() != 3 or tuple(latents.shape[1:]) != (h * w, d):
            raise MaskgenError(f"expected latents of shape [B,{h * w},{d}], got {list(latents.shape)}")
        if not latents.is_floating_point():
            raise MaskgenError(f"expected floating-point latents, got {latents.dtype}")
        z = latents.to(self._device(), torch.float32).div(self.config.scale).transpose(1, 2).reshape(-1, d, h, w)
        return to_uint8(self.decode_latents(z))

    # -- persistence: ``save`` and ``load`` come from Checkpointable -----------------------------------
    checkpoint_name = "tokenizer"
    checkpoint_kind = "kl_tokenizer"
    config_class = KLConfig


@torch.no_grad()
def measure_scale(tokenizer: KLTokenizer, dataset: Dataset, batch_size: int = 256) -> float:
    """1 / std of the posterior means over every latent element of ``dataset``'s images.

    What KL-16's 0.2325 is for MAR (Li et al. 2024) and LDM's ``scale_factor`` (Rombach et
    al. 2022, Sec. 4.3.2): the constant that gives the latents unit variance. The std is the
    population one (ddof 0) about the global mean, accumulated in float64 batch by batch;
    ``dataset`` yields ``(uint8 image [C,H,W], label)``.
    """
    was_training = tokenizer.training
    tokenizer.eval()
    count, mean, m2 = 0, 0.0, 0.0
    try:
        for images, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            tokenizer._check_images(images)
            z = tokenizer.posterior(to_unit(images.to(tokenizer._device()))).mean.double()
            # Chan et al.'s pairwise update of (count, mean, sum of squared deviations)
            n, batch_mean = z.numel(), float(z.mean())
            batch_m2, delta = float((z - batch_mean).pow(2).sum()), batch_mean - mean
            mean += delta * n / (count + n)
            m2 += batch_m2 + delta * delta * count * n / (count + n)
            count += n
    finally:
        tokenizer.train(was_training)
    if count == 0:
        raise MaskgenError("measure_scale: empty dataset")
    std = math.sqrt(m2 / count)
    if not std > 0 or not math.isfinite(std):
        raise MaskgenError(f"cannot scale the latents: their standard deviation is {std}")
    return 1.0 / std
