"""docs/results-compute.md from one command: continuous against discrete tokens along training.

Generators of comparable size trained on Fashion-MNIST on the same machine (a run without
snapshots has no rows), each in
chunks (``maskgen train --stop-at S``, then ``--resume``), with a copy of the exported model
(EMA weights) kept at every chunk's end:

- ``continuous``: ``configs/emigm-continuous-v2-fmnist.yaml`` (eMIGM's MAE, 3 + 3 blocks of width
  128, a 128 x 2 diffusion head) on the KL tokenizer's latents;
- ``single``: the same recipe with one transformer of 6 blocks over every position (``--arch single
  --depth 6``, eMIGM's Fig. 2c ablation), to step 3000 of the same 6000-step schedule;
- ``discrete``: ``configs/maskgit-fmnist.yaml`` (6 blocks of width 128, the shipped reference
  generator's recipe and seed, so its run is that generator's own training) on the VQ tokens, to step
  3000 of its 6000-step schedule; its step 6000 is the shipped reference generator itself
  (``SHIPPED``: the same recipe and seed, trained on the fp32 tokenizer's codes, shipped in bf16).

``eval`` scores every snapshot with ``maskgen eval`` (one subprocess per row, cached by the
snapshot's sha256 and the arguments) and counts each model's training FLOPs per step (3 x the
forward FLOPs of a training batch: forward plus a backward of twice its cost), so the page plots
FD-clf against steps and against training FLOPs, with both tokenizers' reconstruction floors.

    python benchmarks/compute_curves.py train --run continuous --steps 750,1500,3000,4500,6000
    python benchmarks/compute_curves.py train --run single --steps 750,1500,3000
    python benchmarks/compute_curves.py train --run discrete --steps 750,1500,3000
    python benchmarks/compute_curves.py eval --num 500 --seeds 0,1,2 --doc docs/results-compute.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "continuous": {
        "config": "configs/emigm-continuous-v2-fmnist.yaml",
        "args": ["--tokenizer", "src/maskgen/reference/emigm", "--data", "tokens:runs/fmnist-latents"],
        "files": ("generator.json", "generator.safetensors", "tokenizer.json", "tokenizer.safetensors"),
    },
    "single": {  # eMIGM's one-transformer ablation (002 Fig. 2c) of the same recipe: 6 blocks over every position
        "config": "configs/emigm-continuous-v2-fmnist.yaml",
        "args": ["--tokenizer", "src/maskgen/reference/emigm", "--data", "tokens:runs/fmnist-latents", "--arch", "single", "--depth", "6"],
        "files": ("generator.json", "generator.safetensors", "tokenizer.json", "tokenizer.safetensors"),
    },
    "discrete": {
        "config": "configs/maskgit-fmnist.yaml",
        "args": ["--tokenizer", "src/maskgen/reference", "--data", "tokens:runs/fmnist-tokens"],
        "files": ("generator.json", "generator.safetensors", "tokenizer.json", "tokenizer.safetensors"),
    },
}
SHIPPED = {"discrete": (6000, "src/maskgen/reference")}
TRAINED = {"continuous": "750,1500,3000,4500,6000", "single": "750,1500,3000", "discrete": "750,1500,3000"}
MAIN = {  # the sampler each curve is read at: each family's paper sampler at 16 steps
    "continuous": ["--preset", "emigm", "--steps", "16"],
    "single": ["--preset", "emigm", "--steps", "16"],
    "discrete": ["--sampler", "confidence", "--steps", "16"],
}


def maskgen(*args: str, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [str(Path(sys.executable).with_name("maskgen")), *args]
    print("+ maskgen " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def train(a: argparse.Namespace) -> None:
    spec = RUNS[a.run]
    out = Path(a.out) / a.run
    snaps = Path(a.out) / f"{a.run}-snapshots"
    for stop in sorted(int(s) for s in a.steps.split(",")):
        dest = snaps / f"step-{stop:06d}"
        if (dest / "generator.safetensors").is_file():
            continue
        resume = ["--resume"] if (out / "checkpoints").is_dir() else []
        maskgen("train", "--config", spec["config"], *spec["args"], "--out", str(out),
                "--stop-at", str(stop), *resume, threads=a.threads)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in spec["files"]:
            shutil.copy2(out / name, tmp / name)
        tmp.rename(dest)
        print(f"kept {dest}", flush=True)


def snapshots(out: Path, run: str) -> list[tuple[int, Path]]:
    folder = out / f"{run}-snapshots"
    found = sorted(folder.glob("step-*")) if folder.is_dir() else []
    kept = [(int(p.name.split("-")[1]), p) for p in found if (p / "generator.safetensors").is_file()]
    if run in SHIPPED and kept:
        kept.append((SHIPPED[run][0], ROOT / SHIPPED[run][1]))
    return kept


def step_flops(folder: Path, data: str, batches: int = 8) -> float:
    """Training FLOPs of one optimiser step of the model in ``folder``: 3 x the matrix-product
    FLOPs (``flops.FlopCounter``) of its own objective's forward on real batches of 64, averaged
    over ``batches`` steps (the continuous model's encoder and head cost depend on the mask drawn)."""
    import torch

    from flops import FlopCounter
    from maskgen.pipelines import MaskGen
    from maskgen.training.context import StepContext
    from maskgen.training.continuous import MaskedLatentObjective
    from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective
    from maskgen.training.trainer import step_generator
    from maskgen.training import token_dataset

    model = MaskGen.load(folder)
    net, record = model.generator, json.loads((folder / "generator.json").read_text())
    objective = MaskedObjectiveConfig(**record["objective"])
    c = net.config
    if model.continuous:
        loss = MaskedLatentObjective(objective, c.num_classes, c.timestep_input)
    else:
        loss = MaskedTokenObjective(objective, c.mask_id, c.num_classes, c.timestep_input)
    dataset = token_dataset(data, model.tokenizer, progress=False)
    counter = FlopCounter()
    net.train()
    # oneDNN off: its fused kernels bypass the module hooks the counter reads (flops.py)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), counter.counting(net):
        for step in range(batches):
            idx = torch.arange(step * 64, (step + 1) * 64)
            loss(net, dataset.batch(idx), StepContext(step, step_generator(0, step), slice(0, 64), 64))
    return 3.0 * counter.flops / batches


def evaluate(a: argparse.Namespace) -> None:
    from parity import run_rows

    out = Path(a.out)
    seeds = [int(s) for s in a.seeds.split(",")]
    jobs = []
    for run in RUNS:
        snaps = snapshots(out, run)
        for i, (step, folder) in enumerate(snaps):
            for seed in (seeds if i == len(snaps) - 1 else seeds[:1]):  # the seed noise at the last snapshot
                args = ["--model", str(folder), *MAIN[run], "--num", str(a.num), "--seed", str(seed)]
                sha = json.loads((folder / "generator.json").read_text())["sha256"]
                key = hashlib.sha1(json.dumps({"sha256": sha, "args": args[2:]}).encode()).hexdigest()[:16]
                jobs.append({"label": run, "model": str(folder), "sampler": " ".join(MAIN[run]), "seed": seed, "args": args,
                             "sha256": sha, "key": key, "step": step})
    rows_dir = out / "eval-rows"
    run_rows(jobs, rows_dir, a.jobs, str(Path(sys.executable).with_name("maskgen")))
    rows = []
    for j in jobs:
        row = json.loads((rows_dir / f"{j['key']}.json").read_text())
        rows.append({**row, "step": j["step"]})
    flops_file = out / "step-flops.json"
    flops = json.loads(flops_file.read_text()) if flops_file.is_file() else {}
    for run in RUNS:
        if run not in flops and snapshots(out, run):
            args = RUNS[run]["args"]
            flops[run] = step_flops(snapshots(out, run)[0][1], args[args.index("--data") + 1])
            flops_file.write_text(json.dumps(flops, indent=1))
    floors = reconstruction_floors(a, out)
    page = render(a, rows, flops, floors, seeds)
    Path(a.doc).write_text(page)
    print(f"wrote {a.doc}", file=sys.stderr)


def reconstruction_floors(a: argparse.Namespace, out: Path) -> dict[str, float]:
    """FD-clf of each tokenizer's reconstructions of ``--num`` training images (as many of each
    class, the first ones): the floor a generator over its tokens can reach."""
    cache = out / f"floors-{a.num}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    import torch

    from maskgen.data import open_dataset
    from maskgen.metrics.evaluate import evaluate_images, load_network, reference_network
    from maskgen.metrics import load_stats
    from maskgen.tokenizers import load_tokenizer

    ref = load_stats(a.ref)
    net = load_network(reference_network(a.ref), "cpu")
    floors = {}
    for run, spec in RUNS.items():
        same = [r for r in floors if RUNS[r]["args"][1] == spec["args"][1]]
        if same:
            floors[run] = floors[same[0]]
            continue
        tok = load_tokenizer(spec["args"][1])
        data = open_dataset("fashion-mnist", image_size=tok.config.image_size, channels=tok.config.channels)
        labels = torch.as_tensor([data[i][1] for i in range(len(data))])
        per_class = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
        order = torch.stack([idx[: a.num // len(per_class)] for idx in per_class], 1).flatten()
        images = torch.stack([data[int(i)][0] for i in order])
        with torch.no_grad():
            recon = torch.cat([tok.decode(tok.encode(images[i : i + 250])) for i in range(0, len(images), 250)])
        m = evaluate_images(recon.numpy(), labels[order].numpy(), ref, net, progress=False, kid_subsets=10)
        floors[run] = m["fd_clf"]
    cache.write_text(json.dumps(floors))
    return floors


def render(a, rows: list[dict], flops: dict[str, float], floors: dict[str, float], seeds: list[int]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# Continuous against discrete tokens along training", "",
             "Generated by `benchmarks/compute_curves.py` (do not edit by hand):", "", "```bash",
             "\n".join(f"python benchmarks/compute_curves.py train --run {r} --steps {TRAINED[r]}" for r in RUNS),
             f"python benchmarks/compute_curves.py eval --num {a.num} --seeds {a.seeds} --doc {a.doc}", "```", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             *("- " + " ".join(line.strip() for line in item.lstrip("- ").splitlines()) for item in __doc__.split("\n\n")[2].split("\n- ")), "",
             f"Each row is `maskgen eval` on {a.num} samples (labels 0..9 in turn), seed {seeds[0]} (the last snapshot of each "
             f"run also at seeds {', '.join(map(str, seeds[1:]))}: the sampling noise), FD-clf in the shipped classifier's features "
             "against its Fashion-MNIST training-set statistics. Samplers: the continuous model with eMIGM's preset at 16 steps "
             "(`--preset emigm --steps 16`: ancestral, exp, CFG 4 on (0.1, 0.3], DPM-Solver++ 8), the discrete with MaskGIT's "
             "(`--sampler confidence --steps 16`, MaskGIT's decoder). Training FLOPs per step: 3 x the forward matrix-product FLOPs of a batch of 64 "
             "through each model's own training objective (averaged over 8 batches; backward counted as twice the forward).", ""]
    lines += ["| run | step | training PFLOPs | FD-clf | class acc | precision | recall | seed |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["label"], r["step"], r["seed"])):
        pf = r["step"] * flops.get(r["label"], float("nan")) / 1e15
        lines.append(f"| {r['label']} | {r['step']} | {pf:.3f} | {r['fd']:.2f} | {r['class_accuracy']:.3f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['seed']} |")
    lines += ["", "| run | GFLOPs per training step | reconstruction floor FD-clf | last snapshot FD-clf (mean ± sd over seeds) |", "|---|---|---|---|"]
    summary = {}
    for run in RUNS:
        mine = [r for r in rows if r["label"] == run]
        if not mine:
            continue
        last = max(r["step"] for r in mine)
        fds = [r["fd"] for r in mine if r["step"] == last]
        sd = statistics.stdev(fds) if len(fds) > 1 else float("nan")
        summary[run] = (last, statistics.mean(fds), sd)
        lines.append(f"| {run} | {flops.get(run, float('nan')) / 1e9:.1f} | {floors.get(run, float('nan')):.2f} | "
                     f"{statistics.mean(fds):.2f} ± {sd:.2f} (step {last}) |")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for run, color in zip(RUNS, ("tab:blue", "tab:green", "tab:orange")):
        mine = sorted((r for r in rows if r["label"] == run and r["seed"] == seeds[0]), key=lambda r: r["step"])
        if not mine:
            continue
        steps = [r["step"] for r in mine]
        fd = [r["fd"] for r in mine]
        axes[0].plot(steps, fd, "o-", color=color, label=run)
        axes[1].plot([s * flops[run] / 1e15 for s in steps], fd, "o-", color=color, label=run)
        for ax in axes:
            ax.axhline(floors[run], ls="--", color=color, lw=1)
    axes[0].set_xlabel("training steps (batch 64)")
    axes[1].set_xlabel("training PFLOPs")
    for ax in axes:
        ax.set_ylabel("FD-clf (16 steps)")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("Fashion-MNIST: continuous (eMIGM MAE) vs discrete (MaskGIT); dashed: tokenizer reconstructions")
    fig.tight_layout()
    png = Path(a.doc).with_suffix("").name + "-fd-vs-training.png"
    (Path(a.doc).parent / "images").mkdir(exist_ok=True)
    fig.savefig(Path(a.doc).parent / "images" / png, dpi=110)
    lines += ["", f"![FD-clf against training steps and FLOPs](images/{png})", ""]
    lines += verdict(summary, rows, flops, seeds)
    return "\n".join(lines) + "\n"


def discrete_at(step: float, points: list[tuple[int, float]]) -> float | None:
    """FD-clf of a curve at a fractional ``step``, linear in log(step) between its two neighbouring
    snapshots; None outside the snapshots."""
    import math

    for (s0, f0), (s1, f1) in zip(points, points[1:]):
        if s0 <= step <= s1:
            w = (math.log(step) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return f0 + w * (f1 - f0)
    return None


def verdict(summary: dict, rows: list[dict], flops: dict[str, float], seeds: list[int]) -> list[str]:
    """Rule, fixed before the numbers: at equal steps (every step both runs reached) and at equal
    training FLOPs (the continuous model's last snapshot against the discrete curve at the same
    cumulative FLOPs, interpolated linearly in log steps between its snapshots), the better run is the one whose FD-clf is lower by more than twice
    the larger of the two last-snapshot seed sds; otherwise the two are level within the noise.
    A curve is "still falling" when its last snapshot beats the one before by more than that."""
    if len(summary) < 2:
        return []
    sd = max(s[2] for s in summary.values())
    fd = {(r["label"], r["step"]): r["fd"] for r in rows if r["seed"] == seeds[0]}
    out = ["## Verdict", "", verdict.__doc__.split("\n\n")[0].replace("\n    ", " ").strip(), ""]

    def compare(c: float, d: float) -> str:
        if abs(c - d) <= 2 * sd:
            return f"level within the noise ({c:.2f} vs {d:.2f}, 2 sd = {2 * sd:.2f})"
        return f"{'continuous' if c < d else 'discrete'} better ({c:.2f} vs {d:.2f}, 2 sd = {2 * sd:.2f})"

    common = sorted({s for (r, s) in fd if r == "continuous"} & {s for (r, s) in fd if r == "discrete"})
    for step in common:
        out.append(f"- Equal steps, {step}: {compare(fd['continuous', step], fd['discrete', step])}.")
    c_last = summary["continuous"][0]
    c_flops = c_last * flops["continuous"]
    d_steps = sorted(s for (r, s) in fd if r == "discrete")
    d_at = discrete_at(c_flops / flops["discrete"], [(s, fd["discrete", s]) for s in d_steps])
    d_near = min(d_steps, key=lambda s: abs(s * flops["discrete"] - c_flops))
    out.append(f"- Equal training FLOPs, the discrete snapshot of the nearest FLOPs (the first form of this rule; interpolation "
               f"below was added after this page's first version, and both are shown): step {d_near} "
               f"({d_near * flops['discrete'] / 1e15:.3f} PFLOPs): {compare(fd['continuous', c_last], fd['discrete', d_near])}.")
    if d_at is not None:
        out.append(f"- Equal training FLOPs: continuous at step {c_last} ({c_flops / 1e15:.3f} PFLOPs) against the discrete curve at "
                   f"the same FLOPs (step {c_flops / flops['discrete']:.0f}, FD-clf interpolated linearly in log steps between its "
                   f"snapshots): {compare(fd['continuous', c_last], d_at)}.")
    mae_single = sorted({s for (r, s) in fd if r == "continuous"} & {s for (r, s) in fd if r == "single"})
    for step in mae_single:
        c, g = fd["continuous", step], fd["single", step]
        word = "level within the noise" if abs(c - g) <= 2 * sd else ("MAE better" if c < g else "single better")
        out.append(f"- MAE against one transformer (002 Fig. 2c), equal steps {step}: {word} ({c:.2f} vs {g:.2f}, 2 sd = {2 * sd:.2f}).")
    for run in RUNS:
        steps = sorted(s for (r, s) in fd if r == run)
        if len(steps) >= 2:
            drop = fd[run, steps[-2]] - fd[run, steps[-1]]
            out.append(f"- {run}: {'still falling' if drop > 2 * sd else 'flat within the noise'} at its last snapshot "
                       f"({fd[run, steps[-2]]:.2f} at {steps[-2]} -> {fd[run, steps[-1]]:.2f} at {steps[-1]}).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run", choices=sorted(RUNS), required=True)
    t.add_argument("--steps", default="750,1500,3000,4500,6000", help="the steps at which a snapshot is kept")
    t.add_argument("--out", default="runs/curves")
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(fn=train)
    e = sub.add_parser("eval")
    e.add_argument("--out", default="runs/curves")
    e.add_argument("--num", type=int, default=500)
    e.add_argument("--seeds", default="0,1,2")
    e.add_argument("--jobs", type=int, default=1, help="maskgen eval processes at once (one thread each)")
    e.add_argument("--ref", default="src/maskgen/reference/classifier/ref-stats.npz")
    e.add_argument("--doc", default="docs/results-compute.md")
    e.set_defaults(fn=evaluate)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
