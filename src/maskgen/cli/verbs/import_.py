"""``maskgen import``: a published generator checkpoint and its tokenizer into a maskgen model
folder (``maskgen.pipelines.imported``; the formats: ``maskgen.convert.formats.FORMATS``)."""

from __future__ import annotations

import argparse

NAME = "import"
HELP = "Convert a published generator checkpoint and its tokenizer into a maskgen model folder."
REQUIRED = ("format", "generator", "tokenizer", "out")
OUT = "folder"


def add_options(p: argparse.ArgumentParser) -> None:
    from ...convert.formats import FORMATS

    p.add_argument("--format", required=False, help=" or ".join(f"{name} ({f.about})" for name, f in FORMATS.items()))
    p.add_argument("--generator", required=False, help="the published generator checkpoint (.pth)")
    p.add_argument("--tokenizer", required=False, help="the published tokenizer checkpoint (.ckpt)")
    p.add_argument("--out", required=False, help="model folder to write")
    p.add_argument("--image-size", type=int, default=256, help="image size the tokenizer works at (not recorded in the files)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: the published preset for the width)")
    p.add_argument("--raw-weights", dest="use_ema", action="store_false", help="MAR/eMIGM: the raw weights (model) instead of the EMA ones")


def run(args: argparse.Namespace) -> None:
    from ...pipelines.imported import import_published

    out = import_published(args.format, args.generator, args.tokenizer, args.out, args.image_size, args.heads, args.use_ema)
    print(f"imported {args.format} checkpoints into {out}: maskgen sample --model {out} ...")
