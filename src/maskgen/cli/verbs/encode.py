"""``maskgen encode``: a dataset's token ids (VQ) or latents (KL) and labels, pre-extracted once
into a memory-mapped cache that training reads (``tokens:CACHE``); resumable."""

from __future__ import annotations

import argparse

from ...validate import integer

NAME = "encode"
HELP = "Pre-extract token ids (VQ) or latents (KL) and labels into a memory-mapped cache (resumable)."
REQUIRED = ("tokenizer", "out")
OUT = "folder"
LOCKS_OUT = False  # the encode takes its output's lock itself (encode_dataset), around the scratch folder it fills


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", required=False, help="tokenizer folder")
    p.add_argument("--data", default="embedded", help="embedded, fashion-mnist[:DIR], folder:DIR (ImageNet layout: one subfolder per class)")
    p.add_argument("--out", required=False, help="cache folder")
    p.add_argument("--batch-size", type=int, default=256, help="images per tokenizer call (part of what a resume must match)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers that read and decode the images (0: in this process)")
    p.add_argument("--flips", action="store_true", help="also encode every image's horizontal mirror image, as MAR's cache does (training picks one per example)")
    p.add_argument("--image-size", type=int, default=None, help="check: the tokenizer's input size (the default; another is refused)")
    p.add_argument("--device", default="cpu", help="where the tokenizer runs: cpu, cuda, cuda:1, auto")
    p.add_argument("--restart", action="store_true", help="discard an interrupted encode of --out instead of resuming it")


def check(args: argparse.Namespace) -> None:
    integer("--batch-size", args.batch_size, 1)


def run(args: argparse.Namespace) -> None:
    from ...data import cache_kind
    from ...training import encode

    integer("--batch-size", args.batch_size, 1)
    integer("--workers", args.workers, 0)
    if args.image_size is not None:
        integer("--image-size", args.image_size, 1)
    path = encode(args.tokenizer, args.data, args.out, args.batch_size, args.device,
                  num_workers=args.workers, flips=args.flips, image_size=args.image_size, restart=args.restart)
    print(f"{'latent' if cache_kind(path) == 'latents' else 'token'} cache written to {path}")
