"""The CLI verbs that make and use tokenizers (``train-tokenizer``, ``encode``) and their
options; ``maskgen.cli`` parses, these build a ``VQConfig`` or ``KLConfig`` (or the encode's
arguments) and call ``maskgen.workflows``.

``train-tokenizer --kind vq`` (the default) trains the VQ tokenizer, ``--kind kl`` the KL
autoencoder of eMIGM (You et al. 2025) and MAR (Li et al. 2024). An option of one kind
given with the other is refused, never ignored.
"""

from __future__ import annotations

import argparse

from .errors import MaskgenError

KIND_OPTIONS = {
    "vq": ("codebook_size", "code_dim", "commitment"),
    "kl": ("token_dim", "kl_weight"),
}
"""The options only one kind has (argparse ``dest`` names); shape options are shared."""


def add_train_tokenizer_options(p: argparse.ArgumentParser) -> None:
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


def check_kind(args: argparse.Namespace) -> str:
    """``--kind``, refused unless known; and no option of the other kind given with it."""
    kind = args.kind
    if kind not in KIND_OPTIONS:
        raise MaskgenError(f"unknown --kind {kind!r}; expected {' or '.join(KIND_OPTIONS)}")
    for other, names in KIND_OPTIONS.items():
        given = [f"--{n.replace('_', '-')}" for n in names if other != kind and getattr(args, n) is not None]
        if given:
            raise MaskgenError(f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of --kind {other}, not of --kind {kind}")
    return kind


def train_tokenizer(args: argparse.Namespace) -> None:
    from . import workflows
    from .cli import pick
    from .data import open_images
    from .tokenizers import KINDS
    from .training.trainer import TrainConfig

    config_class = KINDS[check_kind(args)][0]
    channels = args.channels if args.channels is not None else open_images(args.data, "train-tokenizer", image_size=args.image_size).channels
    config = pick(config_class, args, channels=channels)
    _, metrics = workflows.train_tokenizer(args.data, args.out, config, pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    if not metrics:
        return
    if "usage" in metrics:
        print(f"tokenizer saved to {args.out}: PSNR {metrics['psnr']:.2f} dB, codebook usage {metrics['usage']:.1%}")
    else:
        print(f"tokenizer saved to {args.out}: PSNR {metrics['psnr']:.2f} dB, latent scale {metrics['scale']:.4g}")


def add_encode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", required=False, help="tokenizer folder")
    p.add_argument("--data", default="embedded", help="embedded, fashion-mnist[:DIR], folder:DIR (ImageNet layout: one subfolder per class)")
    p.add_argument("--out", required=False, help="cache folder")
    p.add_argument("--batch-size", type=int, default=256, help="images per tokenizer call (part of what a resume must match)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers that read and decode the images (0: in this process)")
    p.add_argument("--flips", action="store_true", help="also encode every image's horizontal mirror image, as MAR's cache does (training picks one per example)")
    p.add_argument("--image-size", type=int, default=None, help="check: the tokenizer's input size (the default; another is refused)")
    p.add_argument("--device", default="cpu", help="where the tokenizer runs: cpu, cuda, cuda:1, auto")
    p.add_argument("--restart", action="store_true", help="discard an interrupted encode of --out instead of resuming it")


def encode(args: argparse.Namespace) -> None:
    from . import workflows
    from .data import cache_kind
    from .validate import integer

    integer("--batch-size", args.batch_size, 1)
    integer("--workers", args.workers, 0)
    if args.image_size is not None:
        integer("--image-size", args.image_size, 1)
    path = workflows.encode(args.tokenizer, args.data, args.out, args.batch_size, args.device,
                            num_workers=args.workers, flips=args.flips, image_size=args.image_size, restart=args.restart)
    print(f"{'latent' if cache_kind(path) == 'latents' else 'token'} cache written to {path}")
