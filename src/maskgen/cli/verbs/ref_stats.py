"""``maskgen ref-stats``: the reference feature statistics of a dataset, computed once for ``eval``."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "ref-stats"
HELP = "Compute reference feature statistics of a dataset once (for eval)."
REQUIRED = ("out",)
OUT = "file"


def output_file(args: argparse.Namespace) -> Path | None:
    from ...metrics.stats import stats_path

    return Path(stats_path(args.out)) if args.out else None


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="embedded", help="image data spec")
    p.add_argument("--split", default="train", help="train or test (IDX data)")
    p.add_argument("--num", type=int, default=None, help="use the first N images (default: all)")
    p.add_argument("--network", default="inception", help="inception, inception:FILE or classifier:DIR")
    p.add_argument("--out", required=False, help="statistics file (.npz is added when missing)")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> None:
    from ...devices import resolve_device
    from ...metrics.evaluate import reference_stats

    stats = reference_stats(args.data, args.network, args.out, args.split, args.num, args.batch_size, resolve_device(args.device))
    print(f"reference statistics of {stats.count} images ({stats.network}) written to {output_file(args)}")
