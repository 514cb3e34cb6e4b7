"""Reconstruction and codebook metrics for tokenizers."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from ..progress import progress as progress_bar

from ..errors import MaskgenError

PSNR_CAP = 100.0
"""PSNR reported for an exact reconstruction, so means over images stay finite."""


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB, peak 255) between two uint8 batches [B,C,H,W] or [C,H,W].

    A pair of identical images scores :data:`PSNR_CAP` instead of infinity.
    """
    if a.dtype != torch.uint8 or b.dtype != torch.uint8:
        raise MaskgenError(f"psnr expects uint8 images, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise MaskgenError(f"psnr expects equal shapes, got {list(a.shape)} and {list(b.shape)}")
    if a.dim() == 3:
        a, b = a[None], b[None]
    if a.shape[0] == 0:
        raise MaskgenError("psnr of an empty batch")
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    per_image = torch.where(mse > 0, 10.0 * torch.log10(255.0**2 / mse.clamp_min(1e-12)), torch.full_like(mse, PSNR_CAP))
    return float(per_image.clamp(max=PSNR_CAP).mean())


def codebook_usage(tokens: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Fraction of the codebook that occurs in ``tokens``, and the perplexity of their histogram.

    Perplexity ``exp(H)`` is the effective number of codes: ``codebook_size`` when all
    codes are equally frequent, 1 when one code is used everywhere.
    """
    counts = torch.bincount(tokens.detach().flatten().long().cpu(), minlength=codebook_size).double()
    total = counts.sum()
    if total == 0:
        return {"usage": 0.0, "perplexity": 0.0}
    p = counts / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": float((counts > 0).sum()) / codebook_size, "perplexity": float(math.exp(float(entropy)))}


@torch.no_grad()
def evaluate_tokenizer(tokenizer, dataset: Dataset, num: int = 2000, batch_size: int = 256, progress: bool = True) -> dict[str, float]:
    """Encode then decode the first ``num`` images of ``dataset``; report PSNR (dB), and for a
    tokenizer with a codebook its usage and perplexity.

    ``dataset`` yields ``(uint8 image [C,H,W], label)``.  Usage and perplexity are measured
    over all tokens of the evaluated images together.  A KL tokenizer is evaluated on its
    posterior means (what ``encode`` gives by default and what a latent cache holds).
    """
    n = min(num, len(dataset))
    if n == 0:
        raise MaskgenError("evaluate_tokenizer: empty dataset")
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size, shuffle=False)
    was_training = tokenizer.training
    tokenizer.eval()
    total_psnr, all_tokens = 0.0, []
    try:
        for images, _ in progress_bar(loader, desc="evaluate tokenizer", disable=not progress, leave=False):
            tokens = tokenizer.encode(images)
            recon = tokenizer.decode(tokens).cpu()
            total_psnr += psnr(recon, images) * images.shape[0]
            all_tokens.append(tokens.cpu())
    finally:
        tokenizer.train(was_training)
    if not hasattr(tokenizer, "codebook_size"):
        return {"psnr": total_psnr / n}
    usage = codebook_usage(torch.cat(all_tokens), tokenizer.codebook_size)
    return {"psnr": total_psnr / n, **usage}
