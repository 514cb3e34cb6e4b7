"""docs/results-compute.md from one command: continuous against discrete tokens along training.

Two generators of comparable size trained on Fashion-MNIST on the same machine, each in
chunks (``maskgen train --stop-at S``, then ``--resume``), with a copy of the exported model
(EMA weights) kept at every chunk's end:

- ``continuous``: ``configs/emigm-continuous-v2-fmnist.yaml`` (eMIGM's MAE, 3 + 3 blocks of width
  128, a 128 x 2 diffusion head) on the KL tokenizer's latents;
- ``discrete``: ``configs/maskgit-fmnist.yaml`` (6 blocks of width 128, the shipped reference
  generator's recipe and seed: its last snapshot is that generator retrained) on the VQ tokens.

``eval`` scores every snapshot with ``maskgen eval`` (one subprocess per row, cached by the
snapshot's sha256 and the arguments) and counts each model's training FLOPs per step (3 x the
forward FLOPs of a training batch: forward plus a backward of twice its cost), so the page plots
FD-clf against steps and against training FLOPs, with both tokenizers' reconstruction floors.

    python benchmarks/compute_curves.py train --run continuous --steps 750,1500,3000,4500,6000
    python benchmarks/compute_curves.py train --run discrete --steps 750,1500,3000,4500,6000
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
    "discrete": {
        "config": "configs/maskgit-fmnist.yaml",
        "args": ["--tokenizer", "src/maskgen/reference", "--data", "tokens:runs/fmnist-tokens"],
        "files": ("generator.json", "generator.safetensors", "tokenizer.json", "tokenizer.safetensors"),
    },
}
MAIN = {  # the sampler each curve is read at: each family's paper sampler at 16 steps
    "continuous": ["--preset", "emigm", "--steps", "16"],
    "discrete": ["--sampler", "maskgit", "--steps", "16"],
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run", choices=sorted(RUNS), required=True)
    t.add_argument("--steps", default="750,1500,3000,4500,6000", help="the steps at which a snapshot is kept")
    t.add_argument("--out", default="runs/curves")
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(fn=train)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
