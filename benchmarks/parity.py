"""docs/results-parity.md from one command: maskgen's MAR objective against MAR's own training code.

Two generators of one size, trained on the same latent cache with the same batch, steps,
optimiser, learning-rate schedule and EMA: one by ``maskgen train --preset mar`` (recipe
``configs/mar-continuous-fmnist.yaml``), one by MAR's own code (LTH14/mar @ fe470ac2, its
``models/mar.py`` ``MAR`` with its optimiser, schedule, grad clip and EMA; the script and its
settings are described on the page, it lives outside the repository). MAR's checkpoint comes in
through maskgen's MAR converter (``import`` below). Both are scored by ``maskgen eval`` with
MAR's sampler (``--preset mar --steps 16 --head-steps 100``) at several seeds, and also with
eMIGM's (``--preset emigm --steps 16``, DPM-Solver++ 8 head steps).

Verdict rule, fixed before the numbers: maskgen passes when its mean FD-clf over the seeds is
at most MAR's code's mean plus twice the seed standard deviation (sampling noise: each model's
sd over the seeds, pooled), i.e. within 2 sd of MAR's code, or better.

    python benchmarks/parity.py import --generator MAR_RUN/checkpoint-last.pth \\
        --tokenizer src/maskgen/reference/emigm --out runs/parity/mar-code
    python benchmarks/parity.py import --raw-weights --generator MAR_RUN/checkpoint-last.pth \\
        --tokenizer src/maskgen/reference/emigm --out runs/parity/mar-code-raw
    python benchmarks/parity.py raw --model runs/parity/maskgen \\
        --checkpoint runs/parity/maskgen/checkpoints/step-00001500 --out runs/parity/maskgen-raw
    python benchmarks/parity.py eval --maskgen runs/parity/maskgen --mar-code runs/parity/mar-code \\
        --maskgen-raw runs/parity/maskgen-raw --mar-code-raw runs/parity/mar-code-raw \\
        --seeds 0,1,2 --num 500 --jobs 2 --out runs/parity/eval --doc docs/results-parity.md \\
        --notes benchmarks/parity_notes.md

The raw-weight rows (optional) compare the two objectives without the two EMAs, which differ
in a way maskgen's options cannot close (maskgen's EMA warms up, MAR's does not); they are a
diagnostic beside the verdict, not the verdict.

Each row is one ``maskgen eval`` run (a subprocess, one thread), cached under ``OUT/rows`` by
what determines it (the generator's sha256 and the eval arguments), so a killed run resumes and
a retrained model is scored again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MAR_COMMIT = "fe470ac24afbee924668d8c5c83e9fec60af3a73"
SAMPLERS = {  # name -> maskgen eval options
    "mar": ["--preset", "mar", "--steps", "16", "--head-steps", "100"],
    "emigm": ["--preset", "emigm", "--steps", "16"],
    # MAR's sampler with maskgen's DDPM chain (from step 995): MAR's own from 999 breaks small heads
    "mar-995": ["--preset", "mar", "--steps", "16", "--head-steps", "100", "--head-chain", "clipped"],
}
MAIN = "mar"  # the sampler the verdict is read at (MAR's settings)


def import_mar(a: argparse.Namespace) -> None:
    """MAR's checkpoint-last.pth -> a maskgen model folder, with a maskgen tokenizer folder's files.

    ``maskgen import --format mar`` converts MAR's generator and its published KL-16 VAE
    (kl16.ckpt); a generator trained on a maskgen latent cache pairs instead with the maskgen KL
    tokenizer that wrote the cache, so its tokenizer files are copied as they are."""
    from maskgen.convert.mar import convert_mar
    from maskgen.pipelines import MaskGen

    out, tok = Path(a.out), Path(a.tokenizer)
    if (out / "generator.json").is_file():
        sys.exit(f"{out} already holds a model; import into a new folder")
    gen = convert_mar(a.generator, use_ema=not a.raw_weights, heads=a.heads)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer.safetensors"):
        shutil.copy2(tok / name, out / name)
    gen.save(out, imported_from={"format": "mar", "generator_file": str(a.generator), "tokenizer_folder": str(tok)})
    MaskGen.load(out)  # the pair must load and fit
    print(f"wrote {out}")


def raw_maskgen(a: argparse.Namespace) -> None:
    """A maskgen training checkpoint's raw (non-EMA) weights as a model folder, to compare the
    objectives without the two EMAs (maskgen's warms up, MAR's does not)."""
    from safetensors.torch import load_file

    from maskgen.pipelines import MaskGen

    step, out = Path(a.checkpoint), Path(a.out)
    if (out / "generator.json").is_file():
        sys.exit(f"{out} already holds a model")
    model = MaskGen.load(a.model)
    raw = {k[len("model."):]: v for k, v in load_file(step / "train_state.safetensors").items() if k.startswith("model.")}
    model.generator.load_state_dict(raw, strict=True)
    record = json.loads((Path(a.model) / "generator.json").read_text())
    extra = {k: v for k, v in record.items() if k not in ("config", "kind", "sha256")}
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer.safetensors"):
        shutil.copy2(Path(a.model) / name, out / name)
    model.generator.save(out, **extra, raw_weights_of=str(step))
    MaskGen.load(out)
    print(f"wrote {out}")


def sha256_of(model: str) -> str:
    return json.loads((Path(model) / "generator.json").read_text())["sha256"]


def eval_args(model: str, sampler: str, seed: int, num: int) -> list[str]:
    return ["--model", model, *SAMPLERS[sampler], "--num", str(num), "--seed", str(seed)]


def run_rows(jobs: list[dict[str, Any]], rows_dir: Path, parallel: int, maskgen: str) -> None:
    """Run the ``maskgen eval`` of every job whose row is not cached, ``parallel`` at a time."""
    rows_dir.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if not (rows_dir / f"{j['key']}.json").is_file()]
    running: list[tuple[dict, subprocess.Popen, float]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while todo or running:
        while todo and len(running) < parallel:
            j = todo.pop(0)
            tmp = rows_dir / f"{j['key']}.eval.json"
            cmd = [maskgen, "eval", *j["args"], "--out", str(tmp)]
            log = open(rows_dir / f"{j['key']}.log", "w")
            print(f"start {j['label']} {j['sampler']} seed {j['seed']}", file=sys.stderr, flush=True)
            running.append((j, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time()))
        time.sleep(2)
        for item in list(running):
            j, proc, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                sys.exit(f"maskgen eval failed for {j['label']} {j['sampler']} seed {j['seed']}; see {rows_dir / (j['key'] + '.log')}")
            result = json.loads((rows_dir / f"{j['key']}.eval.json").read_text())
            row = {**{k: j[k] for k in ("label", "model", "sampler", "seed", "key", "sha256", "args")},
                   "fd": result["metrics"]["fd_clf"], "class_accuracy": result["metrics"].get("class_accuracy"),
                   "precision": result["metrics"].get("precision_clf"), "recall": result["metrics"].get("recall_clf"),
                   "nfe": result.get("nfe"), "seconds": time.time() - start}
            (rows_dir / f"{j['key']}.json.tmp").write_text(json.dumps(row, indent=1))
            os.replace(rows_dir / f"{j['key']}.json.tmp", rows_dir / f"{j['key']}.json")
            print(f"done {j['label']} {j['sampler']} seed {j['seed']}: FD-clf {row['fd']:.2f}", file=sys.stderr, flush=True)


def pooled_sd(groups: list[list[float]]) -> float:
    var = [statistics.variance(g) for g in groups if len(g) > 1]
    return (sum(var) / len(var)) ** 0.5 if var else float("nan")


def evaluate(a: argparse.Namespace) -> None:
    seeds = [int(s) for s in a.seeds.split(",")]
    models = {"maskgen": a.maskgen, "MAR code": a.mar_code}
    if a.only:
        models = {k: v for k, v in models.items() if k in a.only.split(",")}
    raw = {"maskgen raw": a.maskgen_raw, "MAR code raw": a.mar_code_raw}
    models.update({k: v for k, v in raw.items() if v and (not a.only or k in a.only.split(","))})
    jobs = []
    for sampler in SAMPLERS:
        for label, model in models.items():
            if label.endswith(" raw") and sampler not in (MAIN, "mar-995"):
                continue
            for seed in seeds:
                args = eval_args(model, sampler, seed, a.num)
                sha = sha256_of(model)
                key = hashlib.sha1(json.dumps({"label": label, "sha256": sha, "args": args[2:]}).encode()).hexdigest()[:16]
                jobs.append({"label": label, "model": model, "sampler": sampler, "seed": seed, "args": args, "sha256": sha, "key": key})
    rows_dir = Path(a.out) / "rows"
    if a.only:
        run_rows([j for j in jobs if j["label"] in a.only.split(",")], rows_dir, a.jobs, a.maskgen_cli)
        return  # a partial run (the other model still training): rows cached, no page
    run_rows(jobs, rows_dir, a.jobs, a.maskgen_cli)
    rows = [json.loads((rows_dir / f"{j['key']}.json").read_text()) for j in jobs]
    (Path(a.out) / "results.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1) + "\n")
    page = render(a, rows, seeds, models)
    if a.doc:
        Path(a.doc).write_text(page)
        print(f"wrote {a.doc}", file=sys.stderr)
    else:
        print(page)


def render(a: argparse.Namespace, rows: list[dict[str, Any]], seeds: list[int], models: dict[str, str]) -> str:
    def fds(label: str, sampler: str) -> list[float]:
        return [r["fd"] for s in seeds for r in rows if r["label"] == label and r["sampler"] == sampler and r["seed"] == s]

    argv = " ".join(shlex.quote(x) for x in sys.argv[1:])
    out = ["# Parity with MAR's own training code", "",
           "Generated by `benchmarks/parity.py` (the commands below). maskgen's MAR objective "
           "(`maskgen train --preset mar`) against MAR's own training code "
           f"([LTH14/mar @ {MAR_COMMIT[:8]}](https://github.com/LTH14/mar/tree/{MAR_COMMIT})), the same model size, "
           "latent cache, batch, steps, optimiser, learning-rate schedule and EMA; both scored by `maskgen eval` "
           f"on {a.num} samples (labels 0..9 in turn) against the shipped classifier's Fashion-MNIST training-set statistics.", "",
           "```bash", f"python benchmarks/parity.py {argv}", "```", "",
           "The MAR-code folders come from `benchmarks/parity.py import` (maskgen's MAR converter on MAR's "
           "`checkpoint-last.pth`, `--raw-weights` for the raw one) and maskgen's raw folder from `benchmarks/parity.py raw` "
           "(the `model.*` tensors of its last training checkpoint); the commands are at the top of the script.", "",
           "Each row is `maskgen eval " + " ".join(eval_args("MODEL", "mar", 0, a.num)).replace("--seed 0", "--seed S") +
           "` (MAR's sampler: one random order per image, cosine counts, CFG 2.9 ramped by revealed fraction, DDPM 100 head steps) "
           "or `maskgen eval " + " ".join(eval_args("MODEL", "emigm", 0, a.num)).replace("--seed 0", "--seed S") + "` (eMIGM's: ancestral, exp, CFG 4 on (0.1, 0.3], DPM-Solver++ 8); `mar-995` is MAR's sampler with maskgen's DDPM chain "
           "(`--head-chain clipped`, from step 995): MAR's chain from step 999 multiplies a small head's eps error by about 350 "
           "in its first update (docs/presets.md), which inflates every `mar` row.", "",
           "## FD-clf per seed", ""]
    head = ["model", "sampler"] + [f"seed {s}" for s in seeds] + ["mean", "sd", "class acc (mean)"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sampler in SAMPLERS:
        for label in models:
            v = fds(label, sampler)
            if not v:
                continue
            acc = [r["class_accuracy"] for r in rows if r["label"] == label and r["sampler"] == sampler]
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            out.append("| " + " | ".join([label, sampler] + [f"{x:.2f}" for x in v] + [f"{statistics.mean(v):.2f}", f"{sd:.2f}", f"{statistics.mean(acc):.3f}"]) + " |")
    out += ["", "## Verdict", "",
            "Rule, fixed before the numbers: maskgen passes when its mean FD-clf over the seeds is at most MAR's code's "
            "mean plus twice the seed sd (each model's sd over the seeds, pooled), i.e. within 2 sd of MAR's code, or better. "
            f"Read at MAR's sampler (`{MAIN}`); the eMIGM-sampler rows are reported beside it.", ""]
    pairs = [("maskgen", "MAR code", s, "EMA weights") for s in SAMPLERS]
    if "maskgen raw" in models and "MAR code raw" in models:
        pairs += [("maskgen raw", "MAR code raw", s, "raw weights, no EMA: a diagnostic") for s in (MAIN, "mar-995")]
    for mine, theirs, sampler, what in pairs:
        m, c = fds(mine, sampler), fds(theirs, sampler)
        sd = pooled_sd([m, c])
        d = statistics.mean(m) - statistics.mean(c)
        verdict = "pass" if d <= 2 * sd else "fail"
        tag = " (the verdict)" if sampler == MAIN and mine == "maskgen" else ""
        out.append(f"- {sampler} sampler, {what}{tag}: maskgen {statistics.mean(m):.2f} vs MAR code {statistics.mean(c):.2f}, "
                   f"difference {d:+.2f} = {d / sd:+.2f} pooled sd (sd {sd:.2f}): **{verdict}**.")
    out += ["", "## The models", "", "| model | folder | generator sha256 |", "|---|---|---|"]
    for label, model in models.items():
        out.append(f"| {label} | `{model}` | `{sha256_of(model)}` |")
    out += [""]
    if a.notes and Path(a.notes).is_file():
        out += [Path(a.notes).read_text().rstrip(), ""]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("import", help="MAR's checkpoint-last.pth plus a maskgen tokenizer folder -> a model folder")
    i.add_argument("--generator", required=True)
    i.add_argument("--tokenizer", required=True, help="the maskgen KL tokenizer folder the latent cache was written with")
    i.add_argument("--out", required=True)
    i.add_argument("--heads", type=int, default=4, help="attention heads (no shape records them)")
    i.add_argument("--raw-weights", action="store_true", help="the raw weights (model) instead of model_ema")
    e = sub.add_parser("eval", help="score both models at every seed and write the page")
    e.add_argument("--maskgen", required=True, help="the model folder maskgen trained")
    e.add_argument("--mar-code", required=True, help="the model folder imported from MAR's code")
    e.add_argument("--maskgen-raw", default=None, help="optional: maskgen's raw weights (`raw` below), scored at MAR's sampler")
    e.add_argument("--mar-code-raw", default=None, help="optional: MAR's raw weights (`import --raw-weights`)")
    e.add_argument("--seeds", default="0,1,2")
    e.add_argument("--num", type=int, default=500)
    e.add_argument("--jobs", type=int, default=2, help="maskgen eval processes at a time (one thread each)")
    e.add_argument("--out", default="runs/parity/eval")
    e.add_argument("--doc", default=None)
    e.add_argument("--only", default=None, help="score only these models (comma-separated labels) and write no page")
    e.add_argument("--notes", default=None, help="a markdown file appended to the page (training settings, causes)")
    e.add_argument("--maskgen-cli", default=str(Path(sys.executable).with_name("maskgen")))
    r = sub.add_parser("raw", help="a maskgen training checkpoint's raw (non-EMA) weights -> a model folder")
    r.add_argument("--model", required=True, help="the trained model folder (config, tokenizer)")
    r.add_argument("--checkpoint", required=True, help="its OUT/checkpoints/step-N folder")
    r.add_argument("--out", required=True)
    a = p.parse_args()
    {"import": import_mar, "raw": raw_maskgen, "eval": evaluate}[a.cmd](a)


if __name__ == "__main__":
    main()
