"""``maskgen export``: a model folder, its self-guidance modules, critic, one-step student and a
classifier, copied into one compact folder (``maskgen.pipelines.export``)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "Copy a model folder, its self-guidance modules, critic and a classifier into one compact folder."
REQUIRED = ("model", "out")
OUT = "folder"


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=False, help="model folder (generator + tokenizer, optional self-guidance*/ and critic/)")
    p.add_argument("--out", required=False, help="new folder")
    p.add_argument("--dtype", default="bf16", help="bf16, fp16 or fp32")
    p.add_argument("--classifier", default=None, help="dataset classifier folder to include")
    p.add_argument("--ref-data", default=None, help="with --classifier: data to compute its reference statistics on")


def run(args: argparse.Namespace) -> None:
    from ...pipelines.export import export_models

    written = export_models(args.model, args.out, args.dtype, args.classifier, args.ref_data)
    print(f"exported {', '.join(written)} ({args.dtype}) to {args.out}")
