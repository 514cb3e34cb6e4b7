"""docs/results-continuous-v2.md from one command: the continuous reference candidate against the
discrete reference, and eMIGM's (002) three disputed claims revisited on it.

The model is a snapshot of ``compute_curves.py``'s continuous run (recipe
``configs/emigm-continuous-v2-fmnist.yaml``, a 6000-step schedule; the folder name says the
step); the discrete reference is the shipped
generator ``src/maskgen/reference``. Every row is one ``maskgen eval`` (``parity.run_rows``: a
subprocess, one thread, cached by the model's sha256 and the arguments) on ``--num`` samples at
each of ``--seeds``; sd is the pooled seed standard deviation of the rows compared.

Rules, fixed before any row ran:

- **Reference.** The candidate replaces the shipped continuous model when its mean FD-clf with
  ``--preset emigm --steps 16`` is at most plain MaskGIT's on the discrete reference at 16 steps
  (``--sampler confidence --steps 16``, MaskGIT's decoder) plus 2 sd.
- **002 Fig. 3b, DPM-Solver against DDPM.** At matched temperature (DDPM at 1, the temperature
  DPM-Solver's ODE implies; eMIGM's preset otherwise), eMIGM's claim (DPM-Solver++ with 8 head
  passes matches or beats DDPM with 100) holds when DPM-Solver's mean FD-clf is at most DDPM's
  plus 2 sd; DPM-Solver 15 is reported beside it.
- **002 Fig. 3c on continuous tokens, the CFG interval.** eMIGM's claim (CFG only on
  (0.1, 0.3] keeps the quality of CFG at every step at a fraction of the passes) holds when the
  interval's mean FD-clf is at most that of CFG at every step plus 2 sd. The cosine schedule with
  the same interval is the schedule check: it spends more steps at low s, so the interval guides
  more of them.
- **002 Fig. 2c, MAE against one transformer** is read on ``compute_curves.py``'s page (both at
  step 3000 of one 6000-step schedule), not here.

    python benchmarks/continuous_verdicts.py --model runs/curves/continuous-snapshots/step-004500 \\
        --num 500 --seeds 0,1,2 --doc docs/results-continuous-v2.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path

from parity import pooled_sd, run_rows

DISCRETE = "src/maskgen/reference"
ROWS = {  # name -> (model: "candidate" or the discrete reference, eval options)
    "emigm preset": ("candidate", ["--preset", "emigm", "--steps", "16"]),
    "discrete maskgit": (DISCRETE, ["--sampler", "confidence", "--steps", "16"]),
    "dpm-solver 8": ("candidate", ["--preset", "emigm", "--steps", "16"]),
    "ddpm 100 tau 1": ("candidate", ["--preset", "emigm", "--steps", "16", "--head-sampler", "ddpm", "--head-steps", "100"]),
    "dpm-solver 15": ("candidate", ["--preset", "emigm", "--steps", "16", "--head-steps", "15"]),
    "cfg every step": ("candidate", ["--preset", "emigm", "--steps", "16", "--cfg-interval", "0", "1"]),
    "cfg interval": ("candidate", ["--preset", "emigm", "--steps", "16"]),
    "cfg interval, cosine": ("candidate", ["--preset", "emigm", "--steps", "16", "--schedule", "cosine"]),
    "no cfg": ("candidate", ["--preset", "emigm", "--steps", "16", "--cfg", "0"]),
}
SECTIONS = [
    ("The candidate against the discrete reference at 16 steps", ["emigm preset", "discrete maskgit"]),
    ("002 Fig. 3b: DPM-Solver++ against DDPM at matched temperature", ["dpm-solver 8", "ddpm 100 tau 1", "dpm-solver 15"]),
    ("002 Fig. 3c on continuous tokens: the CFG interval", ["cfg every step", "cfg interval", "cfg interval, cosine", "no cfg"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the continuous candidate's folder")
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default="runs/continuous-verdicts")
    ap.add_argument("--doc", default="docs/results-continuous-v2.md")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    jobs, seen = [], {}
    for name, (which, options) in ROWS.items():
        model = a.model if which == "candidate" else which
        sha = json.loads((Path(model) / "generator.json").read_text())["sha256"]
        for seed in seeds:
            args = ["--model", model, *options, "--num", str(a.num), "--seed", str(seed)]
            key = hashlib.sha1(json.dumps({"sha256": sha, "args": args[2:]}).encode()).hexdigest()[:16]
            job = {"label": name, "model": model, "sampler": " ".join(options), "seed": seed, "args": args, "sha256": sha, "key": key}
            if key not in seen:  # rows with the same arguments are one run
                seen[key] = job
                jobs.append(job)
            else:
                jobs.append({**job, "key": key})
    rows_dir = Path(a.out) / "rows"
    run_rows(list(seen.values()), rows_dir, a.jobs, str(Path(sys.executable).with_name("maskgen")))
    fd = {name: [] for name in ROWS}
    acc = {name: [] for name in ROWS}
    nfe = {}
    for j in jobs:
        row = json.loads((rows_dir / f"{j['key']}.json").read_text())
        fd[j["label"]].append(row["fd"])
        acc[j["label"]].append(row["class_accuracy"])
        nfe[j["label"]] = row.get("nfe")
    Path(a.doc).write_text(render(a, seeds, fd, acc, nfe))
    print(f"wrote {a.doc}", file=sys.stderr)


def render(a, seeds, fd, acc, nfe) -> str:
    mean = {k: statistics.mean(v) for k, v in fd.items()}
    argv = " ".join(sys.argv[1:])
    out = ["# The continuous reference v2 and eMIGM's disputed claims", "",
           "Generated by `benchmarks/continuous_verdicts.py` (do not edit by hand):", "", "```bash",
           f"python benchmarks/continuous_verdicts.py {argv}", "```", "",
           f"Candidate: `{a.model}` (`configs/emigm-continuous-v2-fmnist.yaml`, the snapshot at the step its folder names, of a 6000-step schedule). Discrete reference: `{DISCRETE}`. "
           f"{a.num} samples per row (labels 0..9 in turn) at seeds {a.seeds}; FD-clf in the shipped classifier's features against "
           "its Fashion-MNIST training-set statistics. The rules, fixed before the rows ran, are the script's docstring; "
           "each section ends with its verdict.", ""]
    for title, names in SECTIONS:
        out += [f"## {title}", "", "| row | options | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd | class acc | NFE |",
                "|---|---|" + "---|" * (len(seeds) + 4)]
        for n in names:
            sd = statistics.stdev(fd[n]) if len(fd[n]) > 1 else float("nan")
            out.append(f"| {n} | `{' '.join(ROWS[n][1])}` | " + " | ".join(f"{x:.2f}" for x in fd[n]) +
                       f" | {mean[n]:.2f} | {sd:.2f} | {statistics.mean(acc[n]):.3f} | {nfe[n]} |")
        out += ["", *verdicts(title, fd, mean), ""]
    return "\n".join(out) + "\n"


def verdicts(title: str, fd, mean) -> list[str]:
    def sd(*names: str) -> float:
        return pooled_sd([fd[n] for n in names])

    if title.startswith("The candidate"):
        s = sd("emigm preset", "discrete maskgit")
        ok = mean["emigm preset"] <= mean["discrete maskgit"] + 2 * s
        return [f"- **{'Ship it' if ok else 'Not reached'}**: eMIGM's preset {mean['emigm preset']:.2f} against plain MaskGIT on the "
                f"discrete reference {mean['discrete maskgit']:.2f} (+ 2 sd = {mean['discrete maskgit'] + 2 * s:.2f})."]
    if title.startswith("002 Fig. 3b"):
        s = sd("dpm-solver 8", "ddpm 100 tau 1")
        ok = mean["dpm-solver 8"] <= mean["ddpm 100 tau 1"] + 2 * s
        return [f"- **{'Agrees' if ok else 'Disagrees'}** with 002 Fig. 3b: DPM-Solver++ 8 {mean['dpm-solver 8']:.2f} against DDPM 100 "
                f"at temperature 1 {mean['ddpm 100 tau 1']:.2f} (2 sd = {2 * s:.2f}); DPM-Solver++ 15: {mean['dpm-solver 15']:.2f}."]
    s = sd("cfg every step", "cfg interval")
    ok = mean["cfg interval"] <= mean["cfg every step"] + 2 * s
    return [f"- **{'Agrees' if ok else 'Disagrees'}** with 002 Fig. 3c on continuous tokens: CFG on (0.1, 0.3] {mean['cfg interval']:.2f} "
            f"against CFG at every step {mean['cfg every step']:.2f} (2 sd = {2 * s:.2f}); with the cosine schedule "
            f"{mean['cfg interval, cosine']:.2f}; no CFG {mean['no cfg']:.2f}."]


if __name__ == "__main__":
    main()
