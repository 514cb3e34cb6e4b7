"""The CLI verbs that make and use tokenizers (``train-tokenizer``, ``encode``) and their
options; ``maskgen.cli`` parses, these build a ``VQConfig`` or ``KLConfig`` and call
``maskgen.workflows``.

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
    from .data import open_dataset
    from .tokenizers import KINDS
    from .training.trainer import TrainConfig

    config_class = KINDS[check_kind(args)][0]
    channels = args.channels if args.channels is not None else open_dataset(args.data, image_size=args.image_size).channels
    config = pick(config_class, args, channels=channels)
    _, metrics = workflows.train_tokenizer(args.data, args.out, config, pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    if not metrics:
        return
    if "usage" in metrics:
        print(f"tokenizer saved to {args.out}: PSNR {metrics['psnr']:.2f} dB, codebook usage {metrics['usage']:.1%}")
    else:
        print(f"tokenizer saved to {args.out}: PSNR {metrics['psnr']:.2f} dB, latent scale {metrics['scale']:.4g}")


def encode(args: argparse.Namespace) -> None:
    from . import workflows
    from .data import cache_kind

    path = workflows.encode(args.tokenizer, args.data, args.out, args.batch_size, args.device)
    print(f"{'latent' if cache_kind(path) == 'latents' else 'token'} cache written to {path}")
