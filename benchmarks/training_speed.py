"""Training speed of the real ``Trainer``: generator (masked-token objective) or VQ tokenizer.

Generator mode (default) trains a randomly initialised ``MaskedTransformer`` with
``MaskedTokenObjective`` on random tokens (``TokenDataset.from_tensors``) and reports
training tokens/s (batch x N tokens per step) and ms/step.  ``--tokenizer`` trains a
``VQTokenizer`` with ``VQObjective`` on random uint8 images and reports images/s.

A step is timed from the start of one objective call to the start of the next, so it holds
everything the trainer does per step (batch indexing, objective, backward, gradient
clipping, AdamW, EMA, logging); the first ``--warmup`` steps are not counted and one extra
step closes the last interval.  Checkpoints go to a temporary folder that is deleted
afterwards, with ``save_every`` beyond the run (the trainer still writes once at the
end, outside the timed steps).  Times are medians over the timed steps.

    python benchmarks/training_speed.py                          # generator, default config
    python benchmarks/training_speed.py --masking bernoulli --weighting elbo
    python benchmarks/training_speed.py --sweep                  # count/bernoulli x one/elbo
    python benchmarks/training_speed.py --tokenizer              # VQ tokenizer, images/s
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from maskgen.data.images import ImageDataset
from maskgen.data.tokens import TokenDataset
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.schedules import schedule_names
from maskgen.tokenizers import VQConfig, VQTokenizer
from maskgen.training.tokenizer import VQObjective
from maskgen.training.masking import MASKINGS, WEIGHTINGS, MaskedObjectiveConfig, MaskedTokenObjective
from maskgen.training.trainer import Trainer, TrainConfig

from common import load_note, parse_grid


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Training throughput of the shared Trainer: generator tokens/s, or VQ tokenizer images/s.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = ap.add_argument_group("generator (random init)")
    g.add_argument("--width", type=int, default=128)
    g.add_argument("--depth", type=int, default=4)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--grid", type=parse_grid, default=(8, 8), help="token grid, e.g. 8x8")
    g.add_argument("--codebook-size", type=int, default=256)
    g.add_argument("--num-classes", type=int, default=10)
    g.add_argument("--timestep-input", action="store_true", help="explicit-timestep generator")
    o = ap.add_argument_group("masked-token objective")
    o.add_argument("--schedule", default="cosine", help=f"one of {', '.join(schedule_names())} or cubic(a,b)")
    o.add_argument("--masking", choices=MASKINGS, default="count")
    o.add_argument("--weighting", choices=WEIGHTINGS, default="one")
    o.add_argument("--t-min", type=float, default=0.0)
    o.add_argument("--cond-drop", type=float, default=0.1)
    o.add_argument("--sweep", action="store_true", help="every masking x weighting combination in one table")
    v = ap.add_argument_group("tokenizer mode")
    v.add_argument("--tokenizer", action="store_true", help="time VQ tokenizer training (VQTokenizer + VQObjective) instead")
    v.add_argument("--image-size", type=int, default=32)
    v.add_argument("--channels", type=int, default=1)
    v.add_argument("--vq-width", type=int, default=32)
    v.add_argument("--vq-codebook-size", type=int, default=256)
    v.add_argument("--downsample", type=int, default=4)
    v.add_argument("--num-res-blocks", type=int, default=1)
    t = ap.add_argument_group("run")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--steps", type=int, default=20, help="timed steps")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    t.add_argument("--ema", type=float, default=0.0, help="EMA decay (0: no EMA weights)")
    t.add_argument("--items", type=int, default=0, help="dataset size (0: 8 batches)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    t.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall: time.perf_counter; cpu: time.process_time, CPU time of this process over all its threads (robust to other processes on the machine; use it with --threads 1, since idle worker threads may spin)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return ap


class StepClock:
    """Wraps an objective and stamps the start of every call."""

    def __init__(self, objective, device: torch.device, clock=time.perf_counter):
        self.objective = objective
        self.device = device
        self.clock = clock
        self.stamps: list[float] = []

    def __call__(self, model, batch, ctx):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stamps.append(self.clock())
        return self.objective(model, batch, ctx)


def run_trainer(model, objective, dataset, args, tokens_per_item: int) -> dict:
    """Train for warmup + steps + 1 steps; the per-step times of the ``steps`` middle ones."""
    device = torch.device(args.device)
    clock = StepClock(objective, device, time.process_time if args.clock == "cpu" else time.perf_counter)
    total = args.warmup + args.steps + 1
    config = TrainConfig(
        steps=total,
        batch_size=args.batch_size,
        warmup=1,
        ema=args.ema,
        seed=args.seed,
        save_every=10**9,
        log_every=10**9,
        device=args.device,
    )
    with tempfile.TemporaryDirectory(prefix="maskgen-bench-") as out:
        trainer = Trainer(model, clock, dataset, config, out, save_model=lambda m, folder: m.save(folder), tokens_per_item=tokens_per_item)
        trainer.fit(progress=False)
    stamps = clock.stamps
    if len(stamps) != total:
        raise RuntimeError(f"expected {total} objective calls, saw {len(stamps)}")
    dts = [b - a for a, b in zip(stamps[args.warmup : -1], stamps[args.warmup + 1 :])]
    med = statistics.median(dts)
    per_step_items = args.batch_size
    return {
        "ms_per_step": med * 1e3,
        "ms_per_step_mean": statistics.fmean(dts) * 1e3,
        "ms_per_step_min": min(dts) * 1e3,
        "items_per_s": per_step_items / med,
        "tokens_per_s": per_step_items * tokens_per_item / med,
        "step_s_all": dts,
        "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
    }


def bench_generator(args, masking: str, weighting: str) -> dict:
    torch.manual_seed(args.seed)
    gen = GeneratorConfig(
        codebook_size=args.codebook_size,
        grid=args.grid,
        num_classes=args.num_classes,
        width=args.width,
        depth=args.depth,
        heads=args.heads,
        timestep_input=args.timestep_input,
    )
    model = MaskedTransformer(gen)
    objective = MaskedTokenObjective(
        MaskedObjectiveConfig(schedule=args.schedule, masking=masking, weighting=weighting, t_min=args.t_min, cond_drop=args.cond_drop),
        gen.mask_id,
        gen.num_classes,
        gen.timestep_input,
    )
    n_items = args.items or 8 * args.batch_size
    rng = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, gen.codebook_size, (n_items, *gen.grid), generator=rng)
    labels = torch.randint(0, max(gen.num_classes, 1), (n_items,), generator=rng)
    dataset = TokenDataset.from_tensors(tokens, labels, gen.codebook_size, [str(i) for i in range(gen.num_classes)])
    res = run_trainer(model, objective, dataset, args, gen.num_tokens)
    params = sum(p.numel() for p in model.parameters())
    return {"mode": "generator", "schedule": args.schedule, "masking": masking, "weighting": weighting, "batch": args.batch_size, "tokens_per_step": args.batch_size * gen.num_tokens, "params": params, **res}


def bench_tokenizer(args) -> dict:
    torch.manual_seed(args.seed)
    vq = VQConfig(
        image_size=args.image_size,
        channels=args.channels,
        codebook_size=args.vq_codebook_size,
        downsample=args.downsample,
        width=args.vq_width,
        num_res_blocks=args.num_res_blocks,
    )
    model = VQTokenizer(vq)
    n_items = args.items or 8 * args.batch_size
    rng = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (n_items, vq.channels, vq.image_size, vq.image_size), generator=rng, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_items,), generator=rng)
    dataset = ImageDataset(images, labels, [str(i) for i in range(10)])
    res = run_trainer(model, VQObjective(), dataset, args, vq.image_size**2)
    params = sum(p.numel() for p in model.parameters())
    return {"mode": "tokenizer", "image_size": vq.image_size, "channels": vq.channels, "codebook": vq.codebook_size, "grid": list(model.grid), "batch": args.batch_size, "params": params, **res}


def table(head: list[str], rows: list[list[str]], left: int) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * left + ["--:"] * (len(head) - left)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        raise SystemExit("--batch-size and --steps must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    load_before = load_note()
    env = f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__} | {args.clock} clock, median of {args.steps} steps after {args.warmup} warmup | {load_before} at start"
    if args.tokenizer:
        r = bench_tokenizer(args)
        results = [r]
        print(f"VQ tokenizer (random init): {r['image_size']}x{r['image_size']}x{r['channels']} images -> {r['grid'][0]}x{r['grid'][1]} codes, codebook {r['codebook']}, width {args.vq_width}, {r['params'] / 1e6:.2f}M params | {env}")
        print()
        print(
            table(
                ["batch", "images/s", "pixels/s", "ms/step (median)", "ms/step (mean)", "ms/step (min)"],
                [[str(r["batch"]), f"{r['items_per_s']:.1f}", f"{r['tokens_per_s']:.0f}", f"{r['ms_per_step']:.1f}", f"{r['ms_per_step_mean']:.1f}", f"{r['ms_per_step_min']:.1f}"]],
                0,
            )
        )
    else:
        combos = [(m, w) for m in MASKINGS for w in WEIGHTINGS] if args.sweep else [(args.masking, args.weighting)]
        results = []
        for m, w in combos:
            results.append(bench_generator(args, m, w))
            print(f"done: masking={m} weighting={w}", file=sys.stderr, flush=True)
        g = GeneratorConfig(codebook_size=args.codebook_size, grid=args.grid, num_classes=args.num_classes, width=args.width, depth=args.depth, heads=args.heads)
        print(
            f"Generator (random init): width {g.width}, depth {g.depth}, heads {g.heads}, grid {g.grid[0]}x{g.grid[1]}, "
            f"codebook {g.codebook_size}, {g.num_classes} classes, {results[0]['params'] / 1e6:.2f}M params | {env}"
        )
        print()
        rows = [
            [r["schedule"], r["masking"], r["weighting"], str(r["batch"]), str(r["tokens_per_step"]), f"{r['tokens_per_s']:.0f}", f"{r['items_per_s']:.1f}", f"{r['ms_per_step']:.1f}", f"{r['ms_per_step_mean']:.1f}", f"{r['ms_per_step_min']:.1f}"]
            for r in results
        ]
        print(table(["schedule", "masking", "weighting", "batch", "tokens/step", "tokens/s", "images/s", "ms/step (median)", "ms/step (mean)", "ms/step (min)"], rows, 3))
    if args.json:
        record = {
            "benchmark": "training_speed",
            "args": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_before": load_before,
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
