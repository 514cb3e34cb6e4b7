"""Training a tokenizer: its losses, in the shape the shared trainer expects, the run that trains
one (``train_tokenizer``), and the encode of a dataset with it into a cache (``encode``).

Both losses share the reconstruction term (:func:`reconstruction`): MSE on images in [-1, 1],
optionally plus L1. The VQ tokenizer adds its commitment loss, the KL autoencoder its
weighted KL term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import save_json
from ..data import absolute_spec, encode_dataset, fingerprint, open_images
from ..devices import resolve_device
from ..errors import MaskgenError
from ..tokenizers import KINDS, kind_of, load_tokenizer, measure_scale
from ..tokenizers.conv import to_unit
from ..tokenizers.kl import KLConfig, KLTokenizer
from ..tokenizers.metrics import codebook_usage
from ..tokenizers.metrics import evaluate_tokenizer
from ..tokenizers.vq import VQConfig, VQTokenizer
from .context import StepContext
from .trainer import Trainer, TrainConfig, seeded


def reconstruction(recon: torch.Tensor, x: torch.Tensor, l1_weight: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(MSE + ``l1_weight`` * L1, the MSE, PSNR in dB of the batch MSE) for images in [-1, 1]."""
    mse = F.mse_loss(recon, x)
    loss = mse + l1_weight * F.l1_loss(recon, x) if l1_weight else mse
    with torch.no_grad():
        # Images live in [-1, 1] (peak-to-peak 2), so PSNR = 10 log10(4 / MSE).
        psnr = 10.0 * torch.log10(4.0 / mse.detach().float().clamp_min(1e-10)).item()
    return loss, mse, psnr


@dataclass
class VQObjective:
    """Reconstruction (MSE, optionally + L1) plus the commitment loss, VQ-VAE style.

    The codebook is trained by EMA inside the forward pass (van den Oord et al. 2017,
    App. A.1), so the returned loss carries no codebook term.  Every ``restart_every``
    steps, codes whose usage died are moved onto random encoder outputs of this batch,
    drawn with ``ctx.rng`` so every rank draws the same rows; the first such call seeds
    the whole codebook from data.  ``restart_every=0`` disables restarts.

    Metrics: ``loss``, ``mse``, ``vq_loss``, ``psnr`` (dB, from the batch MSE at peak 255),
    ``usage`` (fraction of the codebook used in this rank's batch), ``perplexity`` and
    ``restarted`` (codes restarted this step).

    Measured on Fashion-MNIST 32x32 (10k images, default :class:`VQConfig`, AdamW lr 3e-3,
    110 s on 2 CPU cores): batch 32 reaches ~25.8 dB test PSNR, batch 64 ~24.8, batch 128
    ~23.1; at equal time, more small steps beat fewer large ones.
    """

    l1_weight: float = 0.0
    restart_every: int = 1

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        tok: VQTokenizer = getattr(model, "module", model)
        images = batch[0]
        device = next(tok.parameters()).device
        x = to_unit(images.to(device))
        recon, vq_loss, codes = model(x)
        rec, mse, psnr = reconstruction(recon, x, self.l1_weight)
        loss = rec + vq_loss
        restarted = 0
        latents = tok.quantizer.last_latents
        # Never in eval mode: a validation pass must not move the codebook.
        if tok.training and self.restart_every and ctx.step % self.restart_every == 0 and latents is not None:
            restarted = tok.restart_dead_codes(latents, ctx.rng)
        usage = codebook_usage(codes, tok.codebook_size)
        metrics = {
            "loss": float(loss.detach()),
            "mse": float(mse.detach()),
            "vq_loss": float(vq_loss.detach()),
            "psnr": psnr,
            "usage": usage["usage"],
            "perplexity": usage["perplexity"],
            "restarted": float(restarted),
        }
        return loss, metrics


@dataclass
class KLObjective:
    """Reconstruction plus ``kl_weight`` * KL(q(z|x) || N(0, I)) (LDM, Rombach et al. 2022, App. G).

    The decoder sees a posterior sample ``mean + std * eps``; ``eps`` is drawn for the global
    batch from ``ctx.rng`` (so a run gives the same result on any number of processes). The
    KL term is the per-image sum over latent elements divided by the pixel count, the scale
    of the per-pixel reconstruction mean (see :class:`~maskgen.tokenizers.KLConfig`);
    ``kl_weight`` comes from the tokenizer's config.

    Metrics: ``loss``, ``mse``, ``kl`` (per latent element, nats), ``psnr`` (dB, from the
    batch MSE at peak 255) and ``latent_std`` (std of the posterior samples: what the scale
    measured after training will divide by).
    """

    l1_weight: float = 0.0

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        tok: KLTokenizer = getattr(model, "module", model)
        device = next(tok.parameters()).device
        x = to_unit(batch[0].to(device))
        (h, w), d = tok.grid, tok.token_dim
        noise = ctx.draw(torch.randn, d, h, w).to(device)
        recon, kl = model(x, noise)
        rec, mse, psnr = reconstruction(recon, x, self.l1_weight)
        loss = rec + tok.config.kl_weight * kl.mean() / x[0].numel()
        metrics = {
            "loss": float(loss.detach()),
            "mse": float(mse.detach()),
            "kl": float(kl.detach().mean()) / (d * h * w),
            "psnr": psnr,
        }
        return loss, metrics


OBJECTIVES = {"vq": VQObjective, "kl": KLObjective}
"""tokenizer kind (``maskgen.tokenizers.KINDS``) -> its training objective."""


def train_tokenizer(data: str, out: str | Path, config: VQConfig | KLConfig, train: TrainConfig, resume: bool = False, progress: bool = True, until: int | None = None) -> tuple[VQTokenizer | KLTokenizer, dict]:
    """Train a tokenizer of ``config``'s kind (VQ or KL) on ``data``; return it and its metrics.

    Metrics: reconstruction PSNR, plus codebook usage for VQ. A KL tokenizer's latent
    ``scale`` is measured on the training data afterwards (:func:`measure_scale`), written
    into its checkpoint and reported as ``scale``.
    """
    kind = kind_of(config)
    if isinstance(config, KLConfig) and config.scale != 1.0:
        raise MaskgenError(f"KLConfig.scale is measured after training; train with scale 1.0, not {config.scale}")
    model_class, objective_class = KINDS[kind][1], OBJECTIVES[kind]
    dataset = open_images(data, "train-tokenizer", image_size=config.image_size, channels=config.channels)
    model = seeded(train.seed, lambda: model_class(config))
    trainer = Trainer(
        model,
        objective_class(),
        dataset,
        train,
        out,
        save_model=lambda m, folder: m.save(folder),
        record={"data": absolute_spec(data), "data_fingerprint": fingerprint(dataset), "kind": kind, "tokenizer": asdict(config)},
        tokens_per_item=config.image_size**2,
    )
    trainer.fit(resume=resume, progress=progress, until=until)
    if trainer.rank != 0:
        return model, {}
    model = model_class.load(out)
    extra = {}
    if isinstance(model, KLTokenizer):
        model.config.scale = measure_scale(model, dataset)
        model.save(out)
        model = KLTokenizer.load(out)
        extra = {"scale": model.config.scale}
    metrics = {**evaluate_tokenizer(model, dataset, progress=progress), **extra}
    save_json(Path(out) / "metrics.json", {"data": data, "steps": train.steps, "kind": kind, **metrics})
    return model, metrics


def encode(tokenizer_dir: str | Path, data: str, out: str | Path, batch_size: int = 256, device: str = "cpu",
           num_workers: int = 0, flips: bool = False, image_size: int | None = None, restart: bool = False) -> Path:
    """Pre-extract the tokens (VQ) or latents (KL: posterior means, scaled) and labels of ``data``
    into a memory-mapped cache at ``out``, with both horizontal flips if ``flips``; resumable
    (``encode_dataset``). ``image_size`` is a check: the tokenizer's grid fixes it."""
    target = resolve_device(device)
    tokenizer = load_tokenizer(tokenizer_dir).to(target)
    size = tokenizer.config.image_size
    if image_size is not None and image_size != size:
        raise MaskgenError(f"--image-size {image_size}: the tokenizer in {tokenizer_dir} encodes {size}x{size} images (its grid is fixed); omit --image-size")
    # the encode decodes every file in its workers and names a bad one there
    dataset = open_images(data, "encode", image_size=size, channels=tokenizer.config.channels, check_files=False)
    return encode_dataset(tokenizer, dataset, out, batch_size=batch_size, device=target, num_workers=num_workers, flips=flips, restart=restart)
