"""Sampling speed of the shared MaskGIT loop against the bare network forward passes.

For one sampler configuration (or, with ``--sweep``, every fill rule with and without
classifier-free guidance) this measures

- the full sampler (``maskgen.sampling.loop.Sampler``): images/s and NFE per image;
- the bare forward passes alone: the same number of ``model(tokens, labels)`` calls on
  batches of the same shapes as the sampler really ran (recorded with a forward hook, so a
  CFG step counts as one call on 2B rows), timed the same way;
- the loop's overhead, sampler time / bare forward time - 1 (everything that is not the
  network: log-softmax, guidance, token draws, Gumbel noise, ranking, bookkeeping);
- the bare forward passes' GEMM fraction: their model FLOP/s (linear layers and attention,
  counted from the shapes run) over the FLOP/s of a 1024^3 fp32 matrix product timed in the
  same repeats (``flops.py``); target >= 85 % at the default shape on CPU;
- with ``--self-guidance S``, self-guided sampling (000 Eq. 6, scale S, a TOAST module: the
  model folder's ``self-guidance/`` or a freshly initialised one, whose values do not change
  the time) against the same sampler without guidance, paired per repeat: the guided run
  does two network passes per step, so 2x is the floor; target <= 2.1x.

Each measurement is warmed up, then repeated; sampler and bare-forward runs are
interleaved and the overhead is the median of the per-repeat ratios, so a slow patch
caused by other processes hits both sides of a ratio.  Times are medians.

    python benchmarks/sampling_speed.py                       # default config, confidence, 8 steps
    python benchmarks/sampling_speed.py --sweep --cfg 2.0     # 3 fill rules x {no CFG, CFG 2.0}
    python benchmarks/sampling_speed.py --model runs/gen --steps 12 --cfg 3
    python benchmarks/sampling_speed.py --profile 25          # + top non-forward ops
    python benchmarks/sampling_speed.py --self-guidance 1     # + self-guided / unguided time
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from maskgen.models.toast import ToastModule
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.errors import MaskgenError
from maskgen.sampling.denoiser import DiscreteDenoiser
from maskgen.sampling.spec import FILLS, SamplerSpec
from maskgen.sampling.loop import Sampler

from common import add_malloc_option, apply_malloc, load_note, parse_grid
from flops import count_flops, references
from bare_forward import CachedLogits, CallRecorder, bare_inputs, run_bare
from loop_profile import profile_loop


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="Images/s of the MaskGIT sampling loop vs. its bare forward passes (loop overhead).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = ap.add_argument_group("model (a trained folder, or a randomly initialised generator)")
    m.add_argument("--model", type=Path, default=None, help="model folder with generator.{json,safetensors}; overrides the shape options")
    m.add_argument("--width", type=int, default=128)
    m.add_argument("--depth", type=int, default=4)
    m.add_argument("--heads", type=int, default=4)
    m.add_argument("--grid", type=parse_grid, default=(8, 8), help="token grid, e.g. 8x8")
    m.add_argument("--codebook-size", type=int, default=256)
    m.add_argument("--num-classes", type=int, default=10)
    m.add_argument("--timestep-input", action="store_true", help="explicit-timestep generator (random init only)")
    s = ap.add_argument_group("sampler")
    s.add_argument("--sampler", choices=sorted(k for k in FILLS if k != "critic"), default="confidence", help="fill rule")
    # None: the SamplerSpec's default (defaults live once, in the spec)
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--schedule", default=None)
    s.add_argument("--cfg", type=float, default=0.0, help="classifier-free guidance scale (0: off); --sweep uses it, or 2.0, for its CFG rows")
    s.add_argument("--temperature", type=float, default=None)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--choice-temperature", type=float, default=None)
    s.add_argument("--annealing", default=None)
    s.add_argument("--sweep", action="store_true", help="every fill rule, with and without CFG, in one table")
    s.add_argument("--self-guidance", type=float, default=0.0, metavar="S", help="also time self-guided sampling at scale S against the same sampler unguided (0: off)")
    r = ap.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    r.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    r.add_argument("--warmup", type=int, default=1, help="untimed runs before the repetitions (after one untimed run that records the call pattern)")
    r.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall: time.perf_counter; cpu: time.process_time, CPU time of this process over all its threads (robust to other processes on the machine; use it with --threads 1, since idle worker threads may spin)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--profile", type=int, default=0, metavar="K", help="also profile one sampler run (and a self-guided one with --self-guidance) and print the K ops with most self CPU time outside the forward passes")
    r.add_argument("--gemm-size", type=int, default=1024, help="side of the fp32 matrix product whose FLOP/s the forward passes are compared with")
    r.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    add_malloc_option(ap)
    return ap


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(args) -> MaskedTransformer:
    if args.model is not None:
        model = MaskedTransformer.load(args.model)
    else:
        torch.manual_seed(args.seed)
        config = GeneratorConfig(
            codebook_size=args.codebook_size,
            grid=args.grid,
            num_classes=args.num_classes,
            width=args.width,
            depth=args.depth,
            heads=args.heads,
            timestep_input=args.timestep_input,
        )
        model = MaskedTransformer(config)
    return model.to(args.device).eval()


class BareGenerator:
    """What ``SamplerSpec.build`` needs, for a generator without a tokenizer (a TOAST module,
    if any, given)."""

    def __init__(self, network: nn.Module, module: ToastModule | None = None):
        self.network, self.module = network, module

    def denoiser(self) -> DiscreteDenoiser:
        return DiscreteDenoiser(self.network)

    def critic(self, folder=None):
        raise MaskgenError("this benchmark times generator-only samplers; the critic rule needs a model folder")

    def self_guidance_module(self, folder=None) -> ToastModule:
        return self.module


def toast_module(model: MaskedTransformer, args) -> ToastModule:
    """The model folder's self-guidance module, or a fresh one (timing does not depend on its values)."""
    if args.model is not None and (args.model / "self-guidance").is_dir():
        return ToastModule.load(args.model / "self-guidance", model).eval()
    return ToastModule.for_generator(model).to(args.device).eval()


def make_sampler(model: MaskedTransformer, args, fill: str, cfg: float, sg: float = 0.0, module: ToastModule | None = None) -> Sampler:
    """The sampler the spec of these options describes (the one builder every caller uses)."""
    options = dict(sampler=fill, steps=args.steps, schedule=args.schedule, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, cfg=cfg or None)
    if fill == "confidence":
        options.update(choice_temperature=args.choice_temperature, annealing=args.annealing)
    if sg:
        options.update(guidance="self", scale=sg)
    return SamplerSpec.from_options(**options).build(BareGenerator(model, module))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, device: torch.device, clock=time.perf_counter) -> float:
    gc.collect()
    sync(device)
    t0 = clock()
    fn()
    sync(device)
    return clock() - t0


def interleaved(runs: dict, args, device: torch.device) -> dict[str, list[float]]:
    """Times of each run over ``args.repeats`` rounds after ``args.warmup``, in rotating order
    so that no measurement always runs first and a burst of load hits every run of a round."""
    clock = CLOCKS[args.clock]
    times: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    with torch.inference_mode():
        for _ in range(args.warmup):
            for fn in runs.values():
                fn()
        for i in range(args.repeats):
            j = i % len(order)
            for k in order[j:] + order[:j]:
                times[k].append(timed(runs[k], device, clock))
    return times


def bench_self_guidance(model: MaskedTransformer, args, module: ToastModule) -> dict:
    """Self-guided sampling at scale ``args.self_guidance`` against the same sampler unguided."""
    device = torch.device(args.device)
    c = model.config
    labels = torch.arange(args.batch_size, device=device) % max(c.num_classes, 1)
    plain = make_sampler(model, args, args.sampler, args.cfg)
    guided = make_sampler(model, args, args.sampler, args.cfg, args.self_guidance, module)

    def run(s):
        return lambda: s(labels, torch.Generator(device=device).manual_seed(args.seed))

    with torch.inference_mode():
        nfe = (run(plain)().nfe, run(guided)().nfe)
    times = interleaved({"plain": run(plain), "guided": run(guided)}, args, device)
    tp, tg = (statistics.median(times[k]) for k in ("plain", "guided"))
    return {
        "sampler": args.sampler,
        "steps": plain.steps,
        "cfg": args.cfg,
        "self_guidance": args.self_guidance,
        "batch": args.batch_size,
        "nfe_per_image": {"plain": nfe[0], "guided": nfe[1]},
        "plain_s": tp,
        "guided_s": tg,
        # paired per repeat, as the loop overhead
        "ratio": statistics.median(g / p for p, g in zip(times["plain"], times["guided"])),
        "ratio_min": min(times["guided"]) / min(times["plain"]),
        "plain_s_all": times["plain"],
        "guided_s_all": times["guided"],
    }


def bench_one(model: MaskedTransformer, args, fill: str, cfg: float) -> dict:
    device = torch.device(args.device)
    sampler = make_sampler(model, args, fill, cfg)
    c = model.config
    labels = torch.arange(args.batch_size, device=device) % max(c.num_classes, 1)
    if c.num_classes == 0:
        labels = torch.full_like(labels, model.null_class)

    def run_sampler(s=sampler):
        gen = torch.Generator(device=device).manual_seed(args.seed)
        return s(labels, gen)

    # The call pattern (rows per network call) of this configuration, from a real run.
    recorder = CallRecorder(model)
    with torch.inference_mode():
        result = run_sampler()
    recorder.remove()
    rows = recorder.rows
    inputs = bare_inputs(model, rows, device, args.seed + 1)
    with torch.inference_mode():
        stub_sampler = make_sampler(CachedLogits(model, inputs), args, fill, cfg)

    gemms = references(args.gemm_size, device)
    fwd_flops = count_flops(model, lambda: run_bare(model, inputs))
    runs = {"sampler": run_sampler, "bare": lambda: run_bare(model, inputs), "loop": lambda: run_sampler(stub_sampler)}
    times = interleaved({**runs, **{f"gemm_{k}": g for k, g in gemms.items()}}, args, device)
    ts, tf, tl = (statistics.median(times[k]) for k in ("sampler", "bare", "loop"))
    calls = len(rows)
    pairs = list(zip(times["sampler"], times["bare"]))
    return {
        "sampler": fill,
        "steps": sampler.steps,
        "cfg": cfg,
        "batch": args.batch_size,
        "nfe_per_image": result.nfe,
        "forward_calls": calls,
        "rows_per_call": sorted(set(rows)),
        "sampler_s": ts,
        "images_per_s": args.batch_size / ts,
        "bare_forward_s": tf,
        "bare_images_per_s": args.batch_size / tf,
        # paired per repeat, so a slow patch from other processes hits both sides of a ratio
        "overhead": statistics.median(a / b - 1.0 for a, b in pairs),
        "overhead_min_ratio": min(times["sampler"]) / min(times["bare"]) - 1.0,
        "overhead_ms_per_call": statistics.median(a - b for a, b in pairs) / max(calls, 1) * 1e3,
        "loop_only_s": tl,
        "loop_only_ms_per_call": tl / max(calls, 1) * 1e3,
        "loop_only_over_forward": tl / tf,
        "forward_gflop": fwd_flops / 1e9,
        "forward_gflop_per_s": fwd_flops / tf / 1e9,
        "gemm_gflop_per_s": {k: g.flops / statistics.median(times[f"gemm_{k}"]) / 1e9 for k, g in gemms.items()},
        # paired per repeat: the forward passes and the reference GEMM timed in the same round
        "gemm_fraction": {k: statistics.median((fwd_flops / b) / (g.flops / r) for b, r in zip(times["bare"], times[f"gemm_{k}"])) for k, g in gemms.items()},
        "sampler_s_all": times["sampler"],
        "bare_forward_s_all": times["bare"],
        "loop_only_s_all": times["loop"],
    }


def markdown(rows: list[dict]) -> str:
    head = ["sampler", "steps", "cfg", "batch", "NFE/img", "rows/call", "sampler ms", "images/s", "bare fwd ms", "overhead", "overhead ms/call",
            "loop-only ms/call", "loop-only / fwd", "fwd GFLOP/s", "GEMM GFLOP/s BLAS / oneDNN", "fwd / BLAS GEMM", "fwd / oneDNN GEMM"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["--:"] * (len(head) - 2)) + "|"]
    for r in rows:
        cells = [
            r["sampler"],
            str(r["steps"]),
            f"{r['cfg']:g}",
            str(r["batch"]),
            f"{r['nfe_per_image']:g}",
            "/".join(str(x) for x in r["rows_per_call"]),
            f"{r['sampler_s'] * 1e3:.1f}",
            f"{r['images_per_s']:.1f}",
            f"{r['bare_forward_s'] * 1e3:.1f}",
            f"{r['overhead'] * 100:+.1f}%",
            f"{r['overhead_ms_per_call']:.2f}",
            f"{r['loop_only_ms_per_call']:.2f}",
            f"{r['loop_only_over_forward'] * 100:.1f}%",
            f"{r['forward_gflop_per_s']:.1f}",
            " / ".join(f"{r['gemm_gflop_per_s'].get(k, float('nan')):.1f}" for k in ("blas", "onednn")),
            *(f"{r['gemm_fraction'][k] * 100:.1f}%" if k in r["gemm_fraction"] else "n/a" for k in ("blas", "onednn")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_self_guidance(r: dict) -> str:
    nfe = r["nfe_per_image"]
    return "\n".join(
        [
            "| sampler | steps | cfg | self-guidance | batch | NFE/img unguided / guided | unguided ms | self-guided ms | self-guided / unguided | ratio of fastest runs |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
            f"| {r['sampler']} | {r['steps']} | {r['cfg']:g} | {r['self_guidance']:g} | {r['batch']} | {nfe['plain']:g} / {nfe['guided']:g} | "
            f"{r['plain_s'] * 1e3:.1f} | {r['guided_s'] * 1e3:.1f} | {r['ratio']:.3f}x | {r['ratio_min']:.3f}x |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        raise SystemExit("--batch-size and --repeats must be >= 1")
    malloc = apply_malloc(args)
    torch.set_num_threads(args.threads)
    load_start = load_note()
    model = load_model(args)
    c = model.config
    if args.sweep:
        cfg = args.cfg if args.cfg != 0.0 else 2.0
        configs = [(fill, s) for fill in ("confidence", "ancestral", "flow") for s in (0.0, cfg)]
    else:
        configs = [(args.sampler, args.cfg)]
    rows = []
    for fill, cfg in configs:
        rows.append(bench_one(model, args, fill, cfg))
        print(f"done: {fill} cfg={cfg:g}", file=sys.stderr, flush=True)
    module = toast_module(model, args) if args.self_guidance else None
    sg = bench_self_guidance(model, args, module) if module is not None else None
    params = sum(p.numel() for p in model.parameters())
    source = str(args.model) if args.model else "random init"
    print(
        f"Generator ({source}): width {c.width}, depth {c.depth}, heads {c.heads}, grid {c.grid[0]}x{c.grid[1]}, "
        f"codebook {c.codebook_size}, {c.num_classes} classes, {params / 1e6:.2f}M params | "
        f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__} | "
        f"{args.clock} clock, median of {args.repeats} repeats after {args.warmup} warmup runs | {load_start} at start | {malloc}"
    )
    print()
    print(markdown(rows))
    if sg is not None:
        print()
        print(markdown_self_guidance(sg))
    if args.profile:
        labels = torch.arange(args.batch_size, device=args.device) % max(c.num_classes, 1)
        profiled = [(f"{fill}, cfg {cfg:g}", lambda m, f=fill, s=cfg: make_sampler(m, args, f, s)) for fill, cfg in configs]
        if module is not None:
            profiled.append((f"{args.sampler}, cfg {args.cfg:g}, self-guidance {args.self_guidance:g}", lambda m: make_sampler(m, args, args.sampler, args.cfg, args.self_guidance, module)))
        for title, make in profiled:
            print()
            print(profile_loop(model, make, labels, args.seed, f"{title}, {args.steps or 'default'} steps, batch {args.batch_size}", args.profile))
    if args.json:
        record = {
            "benchmark": "sampling_speed",
            "model": source,
            "generator": {k: getattr(c, k) for k in ("codebook_size", "grid", "num_classes", "width", "depth", "heads", "timestep_input")},
            "params": params,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "clock": args.clock,
            "load_start": load_start,
            "malloc": malloc,
            "results": rows,
            "self_guidance": sg,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2, default=list) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
