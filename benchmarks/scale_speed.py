"""Training and sampling speed at the ImageNet-256 recipes' sizes, on whatever device this runs on.

For each recipe (``configs/maskgit-imagenet256.yaml``: MaskGIT, Chang et al. 2022;
``configs/emigm-b-imagenet256.yaml``: eMIGM-B, You et al. 2025, on MAR's MAE + diffusion head,
Li et al. 2024) this builds the recipe's generator at random init on a 16x16 grid (1024
codes, or 16-dim latents), trains it with the real ``Trainer`` on random tokens/latents
(bf16 autocast on CUDA, ``--compile`` for torch.compile) and reports, per device:

- training tokens/s and ms/step (one micro-batch of ``--batch-size`` per step; the recipes'
  default is their per-GPU micro-batch on 8 GPUs), medians over ``--steps`` after ``--warmup``;
- MFU, model FLOP utilisation as in PaLM (Chowdhery et al. 2022): model FLOPs per step /
  step time / the device's peak dense bf16 FLOP/s. Model FLOPs are counted from the shapes
  each step actually runs: 2 x rows x in x out per Linear call and 4 x Sq x Sk x head dim per
  head per attention call, x3 for forward + backward. For the discrete model that is PaLM's
  6 x params x tokens plus 12 x layers x width x seq^2 per sequence; for the MAE it counts the
  encoder on the visible tokens only and the diffusion head on the masked tokens x head draws.
  The FLOPs are counted on an eager replay of the timed steps (same batches and masks), so
  ``--compile`` does not hide them. The peak comes from ``PEAK_TFLOPS`` by ``torch.cuda.get_device_name()`` or ``--peak-tflops``;
  on a CPU without ``--peak-tflops`` MFU is n/a;
- sampling images/s of token generation (decoding excluded) with the recipe's usual sampler:
  MaskGIT confidence 8 steps, CFG 2; eMIGM ancestral 16 steps, DPM-Solver 8, CFG 4 in (0.1, 0.3];
- peak memory: ``torch.cuda.max_memory_allocated`` on CUDA (training and sampling apart); on
  a CPU the process's maximum resident set (``resource``), a high-water mark over the run.

    python benchmarks/scale_speed.py --width 64 --depth 2 --steps 3     # tiny, CPU (under a minute)
    python benchmarks/scale_speed.py --device cuda                      # the recipes' sizes on one GPU
    python benchmarks/scale_speed.py --device cuda --compile --batch-size 32 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from maskgen.cli import build_parser as cli_parser, load_recipe
from maskgen.data.latents import LatentDataset
from maskgen.data.tokens import TokenDataset
from maskgen.errors import MaskgenError
from maskgen.models.continuous import ContinuousConfig, ContinuousGenerator
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.sampling.loop import as_denoiser
from maskgen.sampling.spec import SamplerSpec
from maskgen.training.continuous import MaskedLatentObjective
from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective
from maskgen.training.context import StepContext
from maskgen.training.trainer import Trainer, TrainConfig, resolve_device, step_generator

from common import load_note

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = {"maskgit": CONFIGS / "maskgit-imagenet256.yaml", "emigm-b": CONFIGS / "emigm-b-imagenet256.yaml"}
SAMPLERS = {
    "maskgit": dict(sampler="confidence", steps=8, schedule="cosine", choice_temperature=4.5, annealing="linear", cfg=2.0),
    # eMIGM's cfg 4 in u + cfg (c - u) is s = 3 in maskgen's weak + (1 + s)(strong - weak)
    "emigm-b": dict(sampler="ancestral", steps=16, schedule="exp", head_sampler="dpm-solver", head_steps=8, cfg=3.0, cfg_interval=(0.1, 0.3)),
}
# dense bf16 peak, TFLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
GPUS_PER_RUN = 8  # the recipes' torchrun --nproc_per_node


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--recipes", default="maskgit,emigm-b", help=f"comma-separated subset of {', '.join(RECIPES)}")
    ap.add_argument("--width", type=int, default=None, help="shrink: transformer width (default: the recipe's)")
    ap.add_argument("--depth", type=int, default=None, help="shrink: blocks (MAE: encoder and decoder each; default: the recipe's)")
    ap.add_argument("--heads", type=int, default=None, help="default: the recipe's, or width/64 when --width is given")
    ap.add_argument("--head-width", type=int, default=None, help="eMIGM diffusion head width (default: the recipe's, or 2 x --width)")
    ap.add_argument("--head-depth", type=int, default=None, help="eMIGM diffusion head blocks (default: the recipe's, or --depth)")
    ap.add_argument("--grid", type=int, default=16, help="token grid side (ImageNet 256 / 16)")
    ap.add_argument("--batch-size", type=int, default=None, help="training micro-batch per device (default: the recipe's per GPU on 8 GPUs)")
    ap.add_argument("--sample-batch", type=int, default=None, help="images per sampling call (default: --batch-size)")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    ap.add_argument("--sample-repeats", type=int, default=1, help="timed sampling calls (after one untimed)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak dense bf16 TFLOP/s for MFU (default: the table's, by GPU name)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (TrainConfig.compile)")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="no bf16 autocast on CUDA")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def recipe_options(name: str) -> dict:
    _, verbs = cli_parser()
    return load_recipe(str(RECIPES[name]), verbs["train"])


def fields_of(cls, options: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in options.items() if k in names and v is not None}


def build(name: str, args) -> tuple[nn.Module, object, object, dict]:
    """The recipe's generator (shrunk as asked), its objective, a random dataset, and the sizes used."""
    o = recipe_options(name)
    width = args.width or o["width"]
    heads = args.heads or (o["heads"] if args.width is None else max(1, width // 64))
    sizes = dict(width=width, depth=args.depth or o["depth"], heads=heads, grid=(args.grid, args.grid), num_classes=1000)
    g = torch.Generator().manual_seed(args.seed)
    n, items = args.grid * args.grid, 4 * args.batch_size
    labels = torch.randint(0, 1000, (items,), generator=g)
    classes = [str(i) for i in range(1000)]
    objective_config = MaskedObjectiveConfig(**fields_of(MaskedObjectiveConfig, o))
    if o.get("arch") is None:
        config = GeneratorConfig(**{**fields_of(GeneratorConfig, o), **sizes, "codebook_size": 1024})
        model = MaskedTransformer(config)
        objective = MaskedTokenObjective(objective_config, config.mask_id, 1000)
        data = TokenDataset.from_tensors(torch.randint(0, 1024, (items, args.grid, args.grid), generator=g), labels, 1024, classes)
    else:
        head = dict(head_width=args.head_width or (o["head_width"] if args.width is None else 2 * width),
                    head_depth=args.head_depth or (o["head_depth"] if args.depth is None else args.depth))
        decoder = {"decoder_depth": args.depth} if args.depth else {}
        config = ContinuousConfig(**{**fields_of(ContinuousConfig, o), **sizes, **head, **decoder, "token_dim": 16})
        model = ContinuousGenerator(config)
        objective = MaskedLatentObjective(objective_config, 1000)
        data = LatentDataset.from_tensors(torch.randn(items, args.grid, args.grid, 16, generator=g), labels, classes)
    return model, objective, data, {**sizes, "tokens": n, "options": o}


class FlopCounter:
    """Model FLOPs of the forward passes it sees (x3 for training): Linear calls from forward
    hooks, attention from ``F.scaled_dot_product_attention``, which it wraps while active."""

    def __init__(self) -> None:
        self.flops = 0.0

    @contextmanager
    def counting(self, model: nn.Module):
        def linear(module, inputs, output):
            self.flops += 2.0 * inputs[0].numel() * module.out_features

        sdpa = F.scaled_dot_product_attention

        def attention(q, k, v, *a, **kw):
            self.flops += 4.0 * q.shape[:-1].numel() * k.shape[-2] * q.shape[-1]
            return sdpa(q, k, v, *a, **kw)

        hooks = [m.register_forward_hook(linear) for m in model.modules() if isinstance(m, nn.Linear)]
        F.scaled_dot_product_attention = attention
        try:
            yield self
        finally:
            F.scaled_dot_product_attention = sdpa
            for h in hooks:
                h.remove()


class StepClock:
    """Wraps an objective and stamps the start of every call."""

    def __init__(self, objective, device: torch.device):
        self.objective, self.device = objective, device
        self.stamps: list[float] = []

    def __call__(self, model, batch, ctx):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stamps.append(time.perf_counter())
        return self.objective(model, batch, ctx)


@torch.no_grad()
def training_flops(trainer: Trainer, objective, steps: range) -> float:
    """Mean model FLOPs of the training steps ``steps``: their forward passes replayed eagerly
    (same batches, same masks: the contexts are functions of (seed, step)), x3 for forward + backward."""
    counter, c = FlopCounter(), trainer.config
    with counter.counting(trainer.model):
        for step in steps:
            batch = trainer._to_device(trainer.batches.dataset.batch(trainer.batches.indices(step)))
            ctx = StepContext(step=step, rng=step_generator(c.seed, step), rows=trainer.rows, global_batch=c.batch_size)
            with torch.autocast(trainer.device.type, dtype=torch.bfloat16, enabled=trainer.device.type == "cuda" and c.bf16):
                objective(trainer.model, batch, ctx)
    return 3.0 * counter.flops / len(steps)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def train_speed(model: nn.Module, objective, data, args, device: torch.device) -> dict:
    clock = StepClock(objective, device)
    total = args.warmup + args.steps + 1
    config = TrainConfig(steps=total, batch_size=args.batch_size, warmup=1, ema=0.0, seed=args.seed, save_every=10**9,
                         log_every=10**9, device=str(device), bf16=args.bf16, compile=args.compile)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="maskgen-scale-") as out:
        trainer = Trainer(model, clock, data, config, out, save_model=lambda m, folder: None)
        trainer.fit(progress=False)
    memory = peak_memory_gib(device)
    dts = [b - a for a, b in zip(clock.stamps[args.warmup : -1], clock.stamps[args.warmup + 1 :])]
    step_s = statistics.median(dts)
    flops = training_flops(trainer, objective, range(args.warmup, total - 1))
    return {"ms_per_step": 1e3 * step_s, "flops_per_step": flops, "step_s": step_s, "train_mem": memory}


class Bare:
    """What ``SamplerSpec.build`` needs from a model folder, for a bare generator."""

    def __init__(self, network: nn.Module):
        self.network = network

    def denoiser(self):
        return as_denoiser(self.network)


@torch.no_grad()
def sample_speed(name: str, model: nn.Module, args, device: torch.device) -> dict:
    model.eval()
    sampler = SamplerSpec.from_options(**SAMPLERS[name]).build(Bare(model))
    labels = torch.arange(args.sample_batch, device=device) % 1000
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for r in range(args.sample_repeats + 1):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and args.bf16):
            sampler(labels, torch.Generator(device=device).manual_seed(args.seed + r))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if r:  # the first call warms up
            times.append(time.perf_counter() - start)
    return {"images_per_s": args.sample_batch / statistics.median(times), "sample_mem": peak_memory_gib(device)}


def peak_flops(args, device: torch.device) -> float | None:
    if args.peak_tflops is not None:
        return args.peak_tflops * 1e12
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    return next((t * 1e12 for key, t in PEAK_TFLOPS.items() if key in gpu), None)


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    try:
        device = resolve_device(args.device)
        names = [s.strip() for s in args.recipes.split(",")]
        unknown = [n for n in names if n not in RECIPES]
        if unknown:
            raise MaskgenError(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
        for name in names:
            o = recipe_options(name)
            batch = args.batch_size or o["batch_size"] // GPUS_PER_RUN // o.get("accumulate", 1)
            run = argparse.Namespace(**{**vars(args), "batch_size": batch, "sample_batch": args.sample_batch or batch})
            torch.manual_seed(args.seed)
            model, objective, data, sizes = build(name, run)
            params = sum(p.numel() for p in model.parameters())
            train = train_speed(model, objective, data, run, device)
            sample = sample_speed(name, model, run, device)
            rows.append({"name": name, "params": params, "batch": batch, **sizes, **train, **sample})
    except MaskgenError as e:
        sys.exit(f"scale_speed: error: {e}")
    peak = peak_flops(args, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    gpus = f", {torch.cuda.device_count()} GPUs visible (one used)" if device.type == "cuda" else ""
    peak_note = f"peak {peak / 1e12:g} TFLOP/s bf16" if peak else "no peak FLOP/s known (MFU n/a; give --peak-tflops)"
    print(f"{where}{gpus}; {peak_note}; bf16 {'on' if device.type == 'cuda' and args.bf16 else 'off'}, compile {'on' if args.compile else 'off'}; "
          f"{load_note()}; medians of {args.steps} steps after {args.warmup}, {args.sample_repeats} sampling calls after 1\n")
    print("| recipe | params | width/depth/heads | batch | tokens/s | ms/step | TFLOP/step | MFU | sampler | images/s | peak mem train / sample (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mfu = f"{r['flops_per_step'] / r['step_s'] / peak:.1%}" if peak else "n/a"
        s = SAMPLERS[r["name"]]
        sampler = f"{s['sampler']} {s['steps']}" + (f", {s['head_sampler']} {s['head_steps']}" if "head_sampler" in s else "") + f", CFG {s['cfg']:g}"
        print(f"| {r['name']} | {r['params'] / 1e6:.1f}M | {r['width']}/{r['depth']}/{r['heads']} | {r['batch']} | "
              f"{r['batch'] * r['tokens'] / r['step_s']:,.0f} | {r['ms_per_step']:.1f} | {r['flops_per_step'] / 1e12:.3g} | {mfu} | "
              f"{sampler} | {r['images_per_s']:.2f} | {r['train_mem']:.2f} / {r['sample_mem']:.2f} |")
    if device.type != "cuda":
        print("\nOn a CPU, peak memory is the process's maximum resident set so far (a high-water mark over the rows).")


if __name__ == "__main__":
    main()
