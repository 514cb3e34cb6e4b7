"""``maskgen train-tokenizer``: a convolutional tokenizer, ``--kind vq`` (the default: the VQ
tokenizer, discrete codes) or ``--kind kl`` (the KL autoencoder of eMIGM, You et al. 2025, and
MAR, Li et al. 2024: continuous latents). An option of one kind given with the other is
refused, never ignored."""

from __future__ import annotations

import argparse

from ...errors import MaskgenError
from ..options import add_train_options, pick

NAME = "train-tokenizer"
HELP = "Train a convolutional tokenizer: VQ (discrete codes) or KL (continuous latents); report PSNR."
REQUIRED = ("out",)
OUT = "folder"
TRAIN_DEFAULTS = dict(steps=1500, batch_size=64, lr=2e-3, min_lr=1e-4, warmup=50, weight_decay=0.0, ema=0.0)

KIND_OPTIONS = {
    "vq": ("codebook_size", "code_dim", "commitment"),
    "kl": ("token_dim", "kl_weight"),
}
"""The options only one kind has (argparse ``dest`` names); shape options are shared."""


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="embedded", help="embedded, fashion-mnist[:DIR], folder:DIR")
    p.add_argument("--out", required=False, help="output folder")
    p.add_argument("--kind", default="vq", help="vq: discrete codes (VQ-VAE); kl: continuous latents (KL autoencoder, eMIGM/MAR)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=None, help="1 or 3 (default: the data's)")
    p.add_argument("--downsample", type=int, default=4, help="downsampling factor from image to token grid (power of 2)")
    p.add_argument("--width", type=int, default=None, help="base channel width (default: the kind's config)")
    p.add_argument("--num-res-blocks", type=int, default=None)
    g = p.add_argument_group("vq only")
    g.add_argument("--codebook-size", type=int, default=None, help="number of codes (default: VQConfig's, 256)")
    g.add_argument("--code-dim", type=int, default=None, help="code vector size (default: VQConfig's)")
    g.add_argument("--commitment", type=float, default=None)
    g = p.add_argument_group("kl only")
    g.add_argument("--token-dim", type=int, default=None, help="latent vector size per grid position (default: KLConfig's)")
    g.add_argument("--kl-weight", type=float, default=None, help="weight of KL(q(z|x) || N(0,I)), LDM's convention (default: KLConfig's)")
    add_train_options(p)


def check_first(args: argparse.Namespace) -> str:
    """``--kind``, refused unless known; and no option of the other kind given with it."""
    kind = args.kind
    if kind not in KIND_OPTIONS:
        raise MaskgenError(f"unknown --kind {kind!r}; expected {' or '.join(KIND_OPTIONS)}")
    for other, names in KIND_OPTIONS.items():
        given = [f"--{n.replace('_', '-')}" for n in names if other != kind and getattr(args, n) is not None]
        if given:
            raise MaskgenError(f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of --kind {other}, not of --kind {kind}")
    return kind


def resume_changes(args: argparse.Namespace, out: str, record: dict) -> list[str]:
    return [f"kind {record.get('kind', 'vq')} -> {args.kind}"] if record.get("kind", "vq") != args.kind else []


def run(args: argparse.Namespace) -> None:
    from ...data import open_images
    from ...tokenizers import KINDS
    from ...training import train_tokenizer
    from ...training.trainer import TrainConfig

    config_class = KINDS[check_first(args)][0]
    channels = args.channels if args.channels is not None else open_images(args.data, "train-tokenizer", image_size=args.image_size).channels
    config = pick(config_class, args, channels=channels)
    _, metrics = train_tokenizer(args.data, args.out, config, pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    if not metrics:
        return
    if "usage" in metrics:
        print(f"tokenizer saved to {args.out}: PSNR {metrics['psnr']:.2f} dB, codebook usage {metrics['usage']:.1%}")
    else:
        print(f"tokenizer saved to {args.out}: PSNR {metrics['psnr']:.2f} dB, latent scale {metrics['scale']:.4g}")
