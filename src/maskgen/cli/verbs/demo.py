"""``maskgen demo``: every sampler on the shipped reference models, or a run from scratch
(``maskgen.pipelines.demo``)."""

from __future__ import annotations

import argparse

from ...errors import MaskgenError
from ...pipelines.demo import DEMO_SAMPLERS
from ...validate import integer

NAME = "demo"
HELP = "Every sampler on the shipped reference models: a table and a grid each (--train: train from scratch)."
REQUIRED: tuple[str, ...] = ()
OUT = "folder"
ROWS = tuple(DEMO_SAMPLERS)  # the demo's rows, each named by the --sampler or --guidance value it shows


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="maskgen-demo", help="output folder")
    p.add_argument("--num", type=int, default=1000, help="samples per sampler")
    p.add_argument("--samplers", default=None, help=f"comma-separated subset of the demo's rows, each named by the --sampler or --guidance value it shows: {', '.join(ROWS)} (default: every row the model folder can run; the table gives each row's maskgen sample options)")
    p.add_argument("--model", default=None, help="use this model folder instead of the shipped one")
    p.add_argument("--train", action="store_true", help="train a tokenizer and a generator on the embedded data instead")
    p.add_argument("--tokenizer-steps", type=int, default=None, help="--train: tokenizer steps")
    p.add_argument("--steps", type=int, default=None, help="--train: generator steps")
    p.add_argument("--seed", type=int, default=0)


def check(args: argparse.Namespace) -> None:
    integer("--num", args.num, 1)


def run(args: argparse.Namespace) -> None:
    from ...pipelines.demo import run_demo, run_reference_demo
    from ..sampling import MAX_SAMPLES

    if args.num > MAX_SAMPLES:
        raise MaskgenError(f"--num {args.num:,} samples per sampler is more than one run draws (at most {MAX_SAMPLES:,}; the demo's table is of 1,000)")
    if args.train:
        run_demo(args.out, tokenizer_steps=args.tokenizer_steps, steps=args.steps, seed=args.seed)
    else:
        samplers = [s.strip() for s in args.samplers.split(",")] if args.samplers is not None else None
        if samplers is not None and not all(samplers):
            raise MaskgenError(f"--samplers {args.samplers!r} names an empty sampler; give a comma-separated subset of the demo's samplers")
        run_reference_demo(args.out, num=args.num, seed=args.seed, samplers=samplers, model_dir=args.model)
