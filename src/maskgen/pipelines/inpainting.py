"""Inpainting, outpainting and class-conditional editing of a user's image.

The image is tokenised, every token whose patch touches the region (white in the mask)
is set to [MASK] (a learned mask latent's NaN for continuous tokens), and the sampling
loop completes only those positions: the rest are given and never change (MaskGIT,
Chang et al. 2022, Sec. 4.3 "image editing"; Discrete Interpolants, Hu & Ommer 2025,
Sec. 3.6, where the given positions follow the null scheduler). Any fill rule and guidance
works, because the loop's fill rules already act only on masked positions. Outpainting is
a mask covering the border; editing is the same with another class label. After decoding,
pixels outside the region are pasted back from the input, so only the region changes.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import MaskgenError
from ..sampling.loop import SampleResult, Sampler


def token_region(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """Pixel mask [B, H, W] (True: to sample) -> token mask [B, h*w]: a token is sampled
    when any pixel of its patch is."""
    if mask.dim() != 3:
        raise MaskgenError(f"a region mask must be [B, H, W], got {list(mask.shape)}")
    h, w = grid
    if mask.shape[1] % h or mask.shape[2] % w:
        raise MaskgenError(f"a {mask.shape[1]}x{mask.shape[2]} mask does not split into the {h}x{w} token grid")
    pooled = F.adaptive_max_pool2d(mask[:, None].float(), (h, w))
    return pooled.flatten(1) > 0


def masked_state(mg, images: Tensor, region: Tensor) -> Tensor:
    """The images' tokens (or latents) with the ``region`` [B, N] set to the mask."""
    denoiser = mg.denoiser()
    tokens = mg.tokenizer.encode(images.to(mg.device))
    if mg.continuous:
        return tokens.masked_fill(region[..., None].to(tokens.device), float("nan"))
    return tokens.reshape(len(images), -1).masked_fill(region.to(tokens.device), denoiser.mask_id)


@torch.no_grad()
def inpaint(
    mg,
    images: Tensor,
    mask: Tensor,
    labels: Tensor,
    sampler: Sampler,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor, SampleResult]:
    """Complete ``images`` (uint8 [B, C, H, W] at the model's size) inside ``mask`` ([H, W]
    or [B, H, W], True/nonzero where to sample) for class ``labels`` [B]; returns the
    completed images (pixels outside the mask equal to the input) and the sample result,
    whose tokens outside the token region equal the input's tokens."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    images = torch.as_tensor(images)
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise MaskgenError(f"images to inpaint must be uint8 [B, C, H, W], got {images.dtype} {list(images.shape)}")
    mask = torch.as_tensor(mask).bool()
    if mask.dim() == 2:
        mask = mask.expand(len(images), *mask.shape)
    if tuple(mask.shape[1:]) != tuple(images.shape[2:]):
        raise MaskgenError(f"the mask is {mask.shape[1]}x{mask.shape[2]} but the image is {images.shape[2]}x{images.shape[3]}")
    if len(labels) != len(images) or len(mask) != len(images):
        raise MaskgenError(f"give one label and one mask per image ({len(images)}), got {len(labels)} and {len(mask)}")
    if not mask.any(dim=(1, 2)).all():
        raise MaskgenError("a mask is empty: paint the region to sample in white")
    region = token_region(mask, tuple(mg.denoiser().grid))
    given = masked_state(mg, images, region)
    out, result = mg.generate(labels, sampler, seed=seed, batch_size=batch_size, progress=progress, given=given, on_step=on_step)
    pasted = torch.where(mask[:, None].to(out.device), out, images.to(out.device))
    result.settings.update({"inpainted": True, "region_tokens": region.sum(1).tolist()})
    return pasted, result
