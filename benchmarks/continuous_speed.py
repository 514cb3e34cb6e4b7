"""Sampling speed of a continuous-token (eMIGM) generator, and the diffusion head's share.

For each (mask-prediction steps, head sampler, head steps) row this runs the one sampling
loop on a batch and reports images/s, the transformer passes (NFE) and head passes per
image, and where the time goes: inside the transformer (``ContinuousGenerator.condition``),
inside the diffusion head (every head call), and the rest (the loop, the fill rule, the
solver's arithmetic). eMIGM (You et al. 2025) reports the head adding about 14% at batch
256 on a GPU; on a CPU the split is different, which is what this table shows.

Each row is warmed up once, then repeated; times are medians.

    python benchmarks/continuous_speed.py --model src/maskgen/reference/emigm
    python benchmarks/continuous_speed.py --model runs/ref/emigm --steps 8,16 --heads dpm-solver:8,ddpm:100 --cfg 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from maskgen.errors import MaskgenError
from maskgen.pipeline import MaskGen
from maskgen.sampling.draw import ImageNoise

from common import load_note


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="continuous model folder (generator + KL tokenizer)")
    ap.add_argument("--steps", default="8,16", help="mask-prediction steps, comma-separated")
    ap.add_argument("--heads", default="dpm-solver:5,dpm-solver:8,dpm-solver:15,ddpm:100", help="head sampler:steps, comma-separated")
    ap.add_argument("--sampler", default="ancestral", help="fill rule")
    ap.add_argument("--schedule", default="exp")
    ap.add_argument("--cfg", type=float, default=0.0, help="CFG scale s (0: off), on every step")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    return ap


class Stopwatch:
    """Accumulated wall time inside calls of one function (synchronised on CUDA)."""

    def __init__(self, device: torch.device) -> None:
        self.seconds, self.device = 0.0, device

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def wrap(self, fn):
        def timed(*args, **kwargs):
            self._sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self._sync()
            self.seconds += time.perf_counter() - start
            return out

        return timed


def bench_row(model: MaskGen, steps: int, head: str, args) -> dict:
    sampler_name, head_steps = head.split(":")
    options = dict(sampler=args.sampler, steps=steps, schedule=args.schedule, head_sampler=sampler_name, head_steps=int(head_steps))
    if args.cfg:
        options["cfg"] = args.cfg
    sampler = model.sampler(**options)
    net, device = model.generator, model.device
    head_clock, trunk_clock = Stopwatch(device), Stopwatch(device)
    # instance attributes shadow the methods for this row only (plain functions, not modules)
    net.condition, net.head.forward = trunk_clock.wrap(net.condition), head_clock.wrap(net.head.forward)
    labels = torch.arange(args.batch_size, device=device) % net.config.num_classes
    rows = []
    try:
        for r in range(args.repeats + 1):
            head_clock.seconds = trunk_clock.seconds = 0.0
            start = time.perf_counter()
            result = sampler(labels, ImageNoise(args.seed, range(args.batch_size), device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            total = time.perf_counter() - start
            if r:  # the first run warms up
                rows.append((total, head_clock.seconds, trunk_clock.seconds))
    finally:
        del net.condition, net.head.forward
    total, head_s, trunk_s = (statistics.median(x) for x in zip(*rows))
    return {
        "steps": steps, "head": f"{sampler_name} {head_steps}", "images_per_s": args.batch_size / total,
        "nfe": result.settings["nfe"], "nfe_head": result.settings["nfe_head"],
        "transformer": trunk_s / total, "head_share": head_s / total, "rest": 1 - (trunk_s + head_s) / total,
    }


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    try:
        model = MaskGen.load(args.model, device=args.device)
        if not model.continuous:
            raise MaskgenError(f"{args.model} holds a discrete-token generator; benchmarks/sampling_speed.py measures those")
        rows = [bench_row(model, int(s), h, args) for s in args.steps.split(",") for h in args.heads.split(",")]
    except MaskgenError as e:
        sys.exit(f"continuous_speed: error: {e}")
    print(f"{args.model}, batch {args.batch_size}, {args.sampler} fill, {args.schedule} schedule, CFG {args.cfg:g}, "
          f"device {args.device}, {args.threads} threads, {load_note()}; medians of {args.repeats} runs\n")
    print("| steps | head sampler | images/s | NFE | head passes / image | transformer | head | rest |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['steps']} | {r['head']} | {r['images_per_s']:.1f} | {r['nfe']:g} | {r['nfe_head']:g} | "
              f"{r['transformer']:.0%} | {r['head_share']:.0%} | {r['rest']:.0%} |")


if __name__ == "__main__":
    main()
