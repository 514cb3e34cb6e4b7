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

Side by side with MAR's own code (``--mar PATH``, a checkout of LTH14/mar, imported from that
path, never copied): MAR's ``MAR`` is built at the model's sizes with its own initialisation
(seed 0), and maskgen's MAR converter turns those weights into a maskgen generator, so both
run the same network and weights. Each repeat times MAR's ``sample_tokens(bsz, num_iter,
cfg, cfg_schedule="linear", temperature=1)`` (its 100-step DDPM head) and maskgen's ``mar``
preset with the same iterations, CFG (maskgen's scale = MAR's cfg - 1) and head steps, one
after the other, so load from other processes falls on both; both stop at the latents (no
decoding). MAR's code needs timm (0.9.12, ``pip install --no-deps``) and a torchvision it can
import (with a CPU-only torch, a stand-in module that defines the names timm imports at module
level); its tensors' ``.cuda()`` calls are made no-ops for the run (it has no CPU path).

    python benchmarks/continuous_speed.py --model src/maskgen/reference/emigm --mar ../mar \
        --batch-sizes 4,16 --steps 16 --cfg 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from maskgen.errors import MaskgenError
from maskgen.models.diffusion_head import ConditionedHead
from maskgen.pipeline import MaskGen
from maskgen.sampling.draw import ImageNoise

from common import load_note

CLOCK = [time.perf_counter]  # --clock cpu: time.thread_time, this thread's CPU time


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
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or (with --threads 1 on a machine other processes load) this thread's CPU time")
    ap.add_argument("--mar", type=Path, default=None, help="a checkout of LTH14/mar: time its sample_tokens beside maskgen's mar preset instead")
    ap.add_argument("--batch-sizes", default="4,16", help="with --mar: batch sizes, comma-separated")
    ap.add_argument("--head-steps", type=int, default=100, help="with --mar: DDPM head steps")
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
            start = CLOCK[0]()
            out = fn(*args, **kwargs)
            self._sync()
            self.seconds += CLOCK[0]() - start
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
    net.condition = trunk_clock.wrap(net.condition)
    head_call = ConditionedHead.__call__
    ConditionedHead.__call__ = head_clock.wrap(head_call)  # the head as its samplers call it
    labels = torch.arange(args.batch_size, device=device) % net.config.num_classes
    rows = []
    try:
        for r in range(args.repeats + 1):
            head_clock.seconds = trunk_clock.seconds = 0.0
            start = CLOCK[0]()
            result = sampler(labels, ImageNoise(args.seed, range(args.batch_size), device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            total = CLOCK[0]() - start
            if r:  # the first run warms up
                rows.append((total, head_clock.seconds, trunk_clock.seconds))
    finally:
        del net.condition
        ConditionedHead.__call__ = head_call
    total, head_s, trunk_s = (statistics.median(x) for x in zip(*rows))
    return {
        "steps": steps, "head": f"{sampler_name} {head_steps}", "images_per_s": args.batch_size / total,
        "nfe": result.settings["nfe"], "nfe_head": result.settings["nfe_head"],
        "transformer": trunk_s / total, "head_share": head_s / total, "rest": 1 - (trunk_s + head_s) / total,
    }


def mar_pair(checkout: Path, like: MaskGen, head_steps: int):
    """MAR's ``MAR`` at ``like``'s sizes (its own init, seed 0) and the same weights as a maskgen model."""
    import argparse as _argparse
    import tempfile
    from functools import partial

    from maskgen.convert.mar import convert_mar

    if not (checkout / "models" / "mar.py").is_file():
        raise MaskgenError(f"{checkout} is not a checkout of LTH14/mar (no models/mar.py)")
    sys.path.insert(0, str(checkout.resolve()))
    try:
        from models.mar import MAR
    except ImportError as e:
        raise MaskgenError(f"MAR's code does not import ({e}); it needs timm and an importable torchvision") from None
    c = like.generator.config
    if c.arch != "mae":
        raise MaskgenError("MAR's code is an MAE encoder-decoder; give an arch: mae model")
    settings = dict(img_size=c.grid[0] * 4, vae_stride=4, patch_size=1, encoder_embed_dim=c.width, encoder_depth=c.depth,
                    encoder_num_heads=c.heads, decoder_embed_dim=c.width, decoder_depth=c.decoder_depth or c.depth,
                    decoder_num_heads=c.heads, mlp_ratio=c.mlp_ratio, vae_embed_dim=c.token_dim, class_num=c.num_classes,
                    buffer_size=c.buffer_size, diffloss_d=c.head_depth, diffloss_w=c.head_width,
                    num_sampling_steps=str(head_steps), diffusion_batch_mul=c.head_draws)
    torch.manual_seed(0)
    mar = MAR(norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **settings).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pth"
        state = mar.state_dict()
        torch.save({"model": state, "model_ema": state, "args": _argparse.Namespace(**settings)}, path)
        generator = convert_mar(path, heads=c.heads)
    twin = MaskGen(generator, like.tokenizer)
    return mar, twin


def bench_mar(args) -> list[dict]:
    """MAR's sample_tokens against maskgen's mar preset, same network and weights, interleaved."""
    like = MaskGen.load(args.model, device="cpu")
    if not like.continuous:
        raise MaskgenError(f"{args.model} holds a discrete-token generator; MAR's code is continuous")
    mar, twin = mar_pair(args.mar, like, args.head_steps)
    cuda, head_call = torch.Tensor.cuda, ConditionedHead.__call__
    torch.Tensor.cuda = lambda self, *a, **k: self  # MAR's sampler moves each new tensor to CUDA; here it stays
    rows = []
    try:
        for steps in (int(s) for s in args.steps.split(",")):
            sampler = twin.sampler(preset="mar", steps=steps, head_steps=args.head_steps, cfg=args.cfg - 1.0)
            head_clock = Stopwatch(torch.device("cpu"))
            ConditionedHead.__call__ = head_clock.wrap(head_call)
            for bsz in (int(b) for b in args.batch_sizes.split(",")):
                labels = torch.arange(bsz) % twin.generator.config.num_classes
                times = {"mar": [], "maskgen": [], "head": []}
                for r in range(args.repeats + 1):
                    start = CLOCK[0]()
                    with torch.no_grad():
                        mar.sample_tokens(bsz, num_iter=steps, cfg=args.cfg, cfg_schedule="linear", labels=labels, temperature=1.0)
                    mar_s = CLOCK[0]() - start
                    head_clock.seconds = 0.0
                    start = CLOCK[0]()
                    sampler(labels, ImageNoise(args.seed, range(bsz), "cpu"))
                    ours = CLOCK[0]() - start
                    if r:
                        times["mar"].append(mar_s), times["maskgen"].append(ours), times["head"].append(head_clock.seconds / ours)
                m, g = statistics.median(times["mar"]), statistics.median(times["maskgen"])
                rows.append({"steps": steps, "batch": bsz, "mar": bsz / m, "maskgen": bsz / g, "speedup": m / g, "head_share": statistics.median(times["head"])})
    finally:
        torch.Tensor.cuda = cuda
        ConditionedHead.__call__ = head_call
    return rows


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if args.threads != 1:
            sys.exit("continuous_speed: error: --clock cpu counts one thread's CPU time; use it with --threads 1")
        CLOCK[0] = time.thread_time
    if args.mar is not None:
        try:
            rows = bench_mar(args)
        except MaskgenError as e:
            sys.exit(f"continuous_speed: error: {e}")
        print(f"{args.model} network at MAR's init (seed 0), MAR's code ({args.mar}) against maskgen's mar preset: {args.head_steps} DDPM head steps, "
              f"CFG {args.cfg:g} linear, {args.threads} threads, {args.clock} clock, {load_note()}; medians of {args.repeats} interleaved runs\n")
        print("| steps | batch | MAR code images/s | maskgen images/s | maskgen / MAR | maskgen head share |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['steps']} | {r['batch']} | {r['mar']:.2f} | {r['maskgen']:.2f} | {r['speedup']:.2f}x | {r['head_share']:.0%} |")
        return
    try:
        model = MaskGen.load(args.model, device=args.device)
        if not model.continuous:
            raise MaskgenError(f"{args.model} holds a discrete-token generator; benchmarks/sampling_speed.py measures those")
        rows = [bench_row(model, int(s), h, args) for s in args.steps.split(",") for h in args.heads.split(",")]
    except MaskgenError as e:
        sys.exit(f"continuous_speed: error: {e}")
    print(f"{args.model}, batch {args.batch_size}, {args.sampler} fill, {args.schedule} schedule, CFG {args.cfg:g}, "
          f"device {args.device}, {args.threads} threads, {args.clock} clock, {load_note()}; medians of {args.repeats} runs\n")
    print("| steps | head sampler | images/s | NFE | head passes / image | transformer | head | rest |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['steps']} | {r['head']} | {r['images_per_s']:.1f} | {r['nfe']:g} | {r['nfe_head']:g} | "
              f"{r['transformer']:.0%} | {r['head_share']:.0%} | {r['rest']:.0%} |")


if __name__ == "__main__":
    main()
