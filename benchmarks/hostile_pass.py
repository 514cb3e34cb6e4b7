"""A hostile new user's pass over every verb: bad input, each case run as ``maskgen`` in a
subprocess with a timeout, and classified by what the user sees (issue 24's categories):

- clean: exit 2, one stderr line that names the culprit (the case's expected phrase), and
  nothing written or changed (the working folder, every prepared input and model folder,
  and the installed package, compared file by file before and after);
- misleading: exit 2 and nothing written, but the message does not name the culprit (or is
  more than one line);
- traceback: a Python traceback, or an exit code other than 0 and 2;
- silent: exit 0, or anything written or changed;
- hang: still running at the timeout.

    .venv/bin/python benchmarks/hostile_pass.py                 # every case (~10 min on 2 cores)
    .venv/bin/python benchmarks/hostile_pass.py --verb sample   # the cases of one verb
    .venv/bin/python benchmarks/hostile_pass.py --json out.json # also every case's result

It prepares, once, in a temporary folder (in-process, a minute): a tiny VQ tokenizer
(``tok``), a tiny KL tokenizer (``kltok``), a tiny generator trained on ``tok`` (``gen``, a
training run too), a token cache of it (``cache``), a self-guidance run on it (``sg``), a
sample set (``samples``), and small files of the wrong kind. The shipped models
(``src/maskgen/reference``, with the continuous eMIGM in ``emigm/``) are read, never written.
Every case runs in a fresh empty working folder, with CUDA hidden (``--device cuda`` means
the same everywhere) and bytecode writing off (the package's tree is compared).

Accepted on purpose, so not in the table: ``--temperature 0`` (argmax) and ``--top-k 0`` (all
codes), as their helps say; a negative ``--cfg`` (s = -1 is the unconditional sample, between
-1 and 0 it interpolates towards it, below -1 it pushes away from the class: a choice, not a
typo); ``ref-stats --out FILE`` without ``.npz`` (``FILE.npz`` is written beside it, as its help
says); ``--resume`` on a folder that holds no run yet (it starts one, so a requeued job needs
no other command); a training ``--steps`` of any size (the user asks for that much work).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

import maskgen
from maskgen.cli import main

PACKAGE = Path(maskgen.__file__).resolve().parent
SHIPPED = PACKAGE / "reference"
CATEGORIES = ("clean", "misleading", "traceback", "silent", "hang")

TOK = "--steps 2 --batch-size 8 --width 8 --codebook-size 16 --code-dim 8 --log-every 1"
KL = "--kind kl --steps 2 --batch-size 8 --width 8 --token-dim 4 --log-every 1"
GEN = "--steps 3 --batch-size 16 --width 32 --depth 1 --heads 2 --log-every 1"
SG = "--steps 2 --batch-size 16 --log-every 1"
S = "--num 2 --steps 2"  # the cheapest sample a case asks for


def prepare(w: Path) -> dict[str, str]:
    """The inputs the cases name (``{name}`` in a case), made in ``w``."""
    from PIL import Image

    def run(argv: str) -> None:
        assert main(shlex.split(argv)) == 0, argv

    run(f"train-tokenizer --out {w}/tok {TOK}")
    run(f"train-tokenizer --out {w}/kltok {KL}")
    run(f"train --tokenizer {w}/tok --out {w}/gen {GEN}")
    run(f"encode --tokenizer {w}/tok --out {w}/cache")
    run(f"finetune-sg --model {w}/gen --out {w}/sg {SG}")
    run(f"sample --model {w}/gen --num 4 --steps 2 --out {w}/samples")
    (w / "bin").write_bytes(bytes(range(256)) * 4)
    (w / "list.json").write_text("[1, 2, 3]\n")
    (w / "null.json").write_text("null\n")
    (w / "list.yaml").write_text("- steps\n- 3\n")
    (w / "badkey.yaml").write_text("stepz: 3\n")
    (w / "guidance-dict.json").write_text(json.dumps({"steps": 2, "guidance": {"kind": "cfg", "scale": 1.0}}))
    (w / "seed-string.json").write_text(json.dumps({"sampler": {"steps": 2}, "run": {"seed": "abc", "num": 2}}))
    (w / "steps-big.json").write_text(json.dumps({"steps": 100000}))
    (w / "afile").write_text("a regular file\n")
    (w / "text.png").write_text("not a picture\n")
    (w / "emptydir").mkdir()
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(w / "image.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    Image.fromarray(mask).save(w / "mask.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(w / "black.png")
    (w / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    images = np.zeros((4, 1, 32, 32), np.uint8)
    np.savez(w / "labels-99.npz", images=images, labels=np.full(4, 99))
    np.savez(w / "float-images.npz", images=images.astype(np.float32), labels=np.zeros(4, np.int64))
    np.savez(w / "no-images.npz", labels=np.zeros(4, np.int64))
    np.savez(w / "far-tokens.npz", images=images, labels=np.zeros(4, np.int64), tokens=np.full((4, 64), 999))
    np.savez(w / "pickled.npz", images=np.array([object()] * 4, dtype=object))
    (w / "ref.json").write_text("{}")  # a statistics sidecar with nothing in it, beside a statistics file that is not one
    (w / "ref.npz").write_bytes((w / "bin").read_bytes())
    names = {p.name.replace(".", "_").replace("-", "_"): str(p) for p in w.iterdir()}
    return {**names, "w": str(w), "shipped": str(SHIPPED), "emigm": str(SHIPPED / "emigm"), "pkg": str(PACKAGE),
            "clf": str(SHIPPED / "classifier"), "rs": str(SHIPPED / "classifier" / "ref-stats.npz"), "missing": str(w / "no-such-thing"),
            "npz": str(w / "samples" / "samples.npz"), "sjson": str(w / "samples" / "samples.json")}


# (argv after `maskgen`, a phrase the one-line message must hold to name the culprit)
def cases() -> list[tuple[str, str]]:
    c: list[tuple[str, str]] = []
    t = "train --tokenizer {tok} --out out " + GEN
    # every verb: an unknown option, recipes that are not recipes
    recipes = [("{bin}", "bin"), ("{list_yaml}", "mapping"), ("{missing}.yaml", "does not exist"), ("{badkey_yaml}", "stepz")]
    for i, (verb, base) in enumerate(VERB_BASES.items()):
        recipe, phrase = recipes[i % len(recipes)]
        c += [(f"{base} --bogus 1", "--bogus"), (f"{base} --config {recipe}", phrase)]
    # outputs: the package, and a regular file or another run's folder
    for i, (verb, base) in enumerate(OUT_BASES.items()):
        c += [(f"{base} --out {{pkg}}/x", "package"), (f"{base} --out {{afile}}", "afile") if i % 2 else (f"{base} --out {{samples}}", "already holds")]
    for i, (verb, base) in enumerate(DEVICE_BASES.items()):
        c += [(f"{base} --device cuda", "CUDA") if i % 3 else (f"{base} --device gpu7", "gpu7")]
    c += [
        # train-tokenizer
        ("train-tokenizer --out out --steps 0", "steps"), ("train-tokenizer --out out --lr nan", "lr"),
        ("train-tokenizer --out out --batch-size -1", "batch_size"),
        ("train-tokenizer --out out --image-size 0", "image_size"), ("train-tokenizer --out out --downsample 3", "downsample"),
        ("train-tokenizer --out out --kind foo", "--kind"), ("train-tokenizer --out out --data {missing}", "no-such-thing"),
        ("train-tokenizer --out out --data folder:{afile}", "afile"), ("train-tokenizer --out out --data tokens:{cache}", "token"),
        ("train-tokenizer --out out --codebook-size 0", "codebook_size"),
        ("train-tokenizer --out {tok} " + TOK + " --resume --lr 0.5", "lr"), ("train-tokenizer --out {tok} " + TOK, "--resume"),
        ("train-tokenizer --out {tok} " + TOK + " --resume --commitment 0.9", "commitment"),
        ("train-tokenizer --out out --steps 1e12", "--steps"), ("train-tokenizer --out out --stop-at 0", "--stop-at"),
        # encode
        ("encode --tokenizer {missing} --out out", "no-such-thing"), ("encode --tokenizer {clf} --out out", "tokenizer"),
        ("encode --tokenizer {afile} --out out", "afile"), ("encode --tokenizer {tok} --out out --batch-size 0", "--batch-size"),
        ("encode --tokenizer {tok} --out out --workers -1", "--workers"), ("encode --tokenizer {tok} --out out --data {missing}", "no-such-thing"),
        ("encode --tokenizer {tok} --out out --image-size 64", "--image-size"), ("encode --tokenizer {tok} --out out --data tokens:{cache}", "token"),
        ("encode --tokenizer {kltok} --out {cache}", "cache"),
        # train
        ("train --tokenizer {missing} --out out", "no-such-thing"), ("train --tokenizer {tok} --out out --data tokens:{missing}", "no-such-thing"),
        ("train --tokenizer {kltok} --out out --data tokens:{cache}", "cache"), (t + " --width 30 --heads 4", "width 30"),
        (t + " --depth 0", "depth"), (t + " --lr nan", "lr"), (t + " --t-min 1", "t_min"),
        (t + " --uncond foo", "uncond"), (t + " --schedule bogus", "bogus"), (t + " --modalities image,depth", "depth"), (t + " --cond-drop 2", "cond_drop"),
        ("train --tokenizer {tok} --out {gen} " + GEN + " --resume --lr 0.5", "lr"), ("train --tokenizer {tok} --out {gen} " + GEN, "--resume"),
        ("train --tokenizer {tok} --out {gen} " + GEN + " --resume --norm-eps 1e-3", "norm_eps"),
        ("train --tokenizer {shipped} --out {gen} " + GEN + " --resume", "tokenizer"), ("train --tokenizer {tok} --out {gen} " + GEN + " --resume --overwrite", "--overwrite"),
        ("train --tokenizer {tok} --out out --preset bogus", "bogus"), ("train --tokenizer {tok} --out out --head-width 64", "--head-width"),
        # import
        ("import --format bogus --generator {bin} --tokenizer {bin} --out out", "bogus"),
        ("import --format valeoai-v1 --generator {missing} --tokenizer {bin} --out out", "no-such-thing"),
        ("import --format valeoai-v1 --generator {bin} --tokenizer {bin} --out out", "bin"),
        ("import --format mar --generator {list_json} --tokenizer {list_json} --out out", "list.json"),
        ("import --format valeoai-v1 --generator {bin} --tokenizer {bin} --out out --image-size 0", "image"),
        ("import --format valeoai-v1 --generator {bin} --tokenizer {bin} --out out --heads 0", "heads"),
        ("import --format valeoai-v1 --generator {emptydir} --tokenizer {bin} --out out", "emptydir"),
        # finetune-sg
        ("finetune-sg --model {missing}", "no-such-thing"), ("finetune-sg --model {tok} --out out", "generator"),
        ("finetune-sg --model {emigm} --out out", "continuous"), ("finetune-sg --model {shipped}", "package"),
        ("finetune-sg --model {gen} --out out --error-rate 2", "error_rate"), ("finetune-sg --model {gen} --out out --data tokens:{missing}", "no-such-thing"),
        ("finetune-sg --model {gen} --out {sg} " + SG + " --resume --lr 0.5", "lr"), ("finetune-sg --model {shipped} --out {sg} " + SG + " --resume", "generator"),
        ("finetune-sg --model {gen} --out out --task bogus", "bogus"), ("finetune-sg --model {gen} --out out --label-smoothing -1", "label_smoothing"),
        # train-critic
        ("train-critic --model {missing}", "no-such-thing"), ("train-critic --model {emigm} --out out", "continuous"),
        ("train-critic --model {shipped}", "package"), ("train-critic --model {gen} --out out --heldout 0", "--heldout"),
        ("train-critic --model {gen} --out out --draw-temperature 0", "draw_temperature"), ("train-critic --model {gen} --out out --width 30 --heads 4", "30"),
        ("train-critic --model {tok} --out out", "generator"), ("train-critic --model {gen} --out out --data tokens:{cache} --heldout 100000", "heldout"),
        # sample
        ("sample --model {missing} --out out", "no-such-thing"), ("sample --model {tok} --out out", "generator"),
        ("sample --model {clf} --out out", "generator"), ("sample --model {afile} --out out", "afile"),
        ("sample --out out --num 0", "--num"), ("sample --out out --num -5", "--num"), ("sample --out out --num 1000000000000", "--num"), ("sample --out out --steps 0", "steps"), ("sample --out out --steps 100000", "--steps"),
        ("sample --out out --cfg nan", "cfg"), ("sample --out out --top-p 1.5", "top_p"), ("sample --out out --classes 10", "10"),
        ("sample --out out --classes a,b", "--classes"), ("sample --out out --classes -1", "-1"),
        ("sample --out out --sampler bogus", "bogus"), ("sample --out out --schedule bogus", "bogus"), ("sample --out out --guidance bogus", "bogus"),
        ("sample --out out --spec {bin}", "bin"), ("sample --out out --spec {list_json}", "list.json"), ("sample --out out --spec {null_json}", "null.json"),
        ("sample --out out --spec {guidance_dict_json}", "guidance"), ("sample --out out --spec {seed_string_json}", "seed"),
        ("sample --out out --spec {missing}.json", "no-such-thing"), ("sample --out out --spec {steps_big_json}", "steps"),
        ("sample --out out --spec {sjson} --steps 3", "--steps"), ("sample --out out --sampler critic --critic {missing} " + S, "no-such-thing"),
        ("sample --model {gen} --out out --guidance self " + S, "self-guidance"), ("sample --out out --guidance self --sg-module {missing} " + S, "no-such-thing"),
        ("sample --out out --batch-size 0", "batch"), ("sample --out out --seed abc", "--seed"), ("sample --out out --acceptance 0", "acceptance"),
        ("sample --out out --acceptance 0.5", "--rejection-classifier"), ("sample --out out --acceptance 0.5 --rejection-classifier classifier:{missing}", "no-such-thing"),
        ("sample --out out --acceptance 0.5 --rejection-classifier bogus:x", "bogus"), ("sample --out out --preset bogus", "bogus"),
        ("sample --model {emigm} --out out --head-steps 0 " + S, "head"), ("sample --model {emigm} --out out --top-k 5 " + S, "top_k"),
        ("sample --model {emigm} --out out --sampler critic " + S, "critic"), ("sample --out out --given image:{missing}", "joint"),
        ("sample --out out --cfg 1 --cfg-interval 0.5 0.1", "interval"), ("sample --out out --cfg-interval 0.1 0.5", "--cfg"),
        ("sample --out out --annealing bogus", "bogus"),
        ("sample --out out --sampler one-step " + S, "one-step"), ("sample --out out --blur-sigma 1", "blur"),
        # refine
        ("refine --samples {missing}.npz --out out", "no-such-thing"), ("refine --samples {bin} --out out", "bin"),
        ("refine --samples {corrupt_npz} --out out", "corrupt"), ("refine --samples {npz} --model {emigm} --out out", "continuous"),
        ("refine --samples {npz} --model {tok} --out out", "generator"), ("refine --samples {npz} --out out --fraction 0", "--fraction"),
        ("refine --samples {npz} --out out --steps 100000", "--steps"),
        ("refine --samples {far_tokens_npz} --model {gen} --out out", "tokens"), ("refine --samples {npz} --model {gen} --out out", "critic"),
        ("refine --samples {pickled_npz} --model {gen} --out out", "pickled"), ("refine --samples {no_images_npz} --model {gen} --out out", "tokens"),
        ("refine --samples {npz} --out out --sampler confidence", "critic"),
        # train-classifier
        ("train-classifier --out out --data {missing}", "no-such-thing"), ("train-classifier --out out --data tokens:{cache}", "token"),
        ("train-classifier --out out --width 12", "width"), ("train-classifier --out out --feature-dim 0", "feature_dim"),
        ("train-classifier --out out --image-size 0", "image"), ("train-classifier --out {gen}", "already holds"),
        
        # ref-stats
        ("ref-stats --out r.npz --data {missing}", "no-such-thing"), ("ref-stats --out r.npz --network vgg", "vgg"),
        ("ref-stats --out r.npz --network classifier:{missing}", "no-such-thing"), ("ref-stats --out r.npz --network classifier:{tok}", "classifier"),
        ("ref-stats --out r.npz --num 0", "--num"), ("ref-stats --out r.npz --num 100000", "--num"), ("ref-stats --out r.npz --split bogus", "bogus"),
        ("ref-stats --out {corrupt_npz}", "already exists"), ("ref-stats --out {pkg}/x.npz", "package"),
        ("ref-stats --out r.npz --data tokens:{cache}", "token"), ("ref-stats --out r.npz --network inception:{bin}", "bin"),
        # eval
        ("eval --samples {missing}.npz", "no-such-thing"), ("eval --samples {bin} --out e.json", "bin"), ("eval --samples {npz} --ref {bin} --out e.json", "bin"),
        ("eval --samples {npz} --ref {missing}.npz --out e.json", "no-such-thing"), ("eval --samples {npz} --model {gen} --out e.json", "--samples"),
        ("eval --samples {npz} --kid-subsets 0 --out e.json", "--kid-subsets"), ("eval --samples {npz} --is-mode bogus --out e.json", "bogus"),
        ("eval --samples {npz} --out {gen}/generator.json", "already exists"), ("eval --out {shipped}/generator.json", "package"),
        ("eval --samples {npz} --network classifier:{tok} --out e.json", "classifier"), ("eval --model {emigm} --num 10000000 --out e.json", "--num"),
        ("eval --samples {labels_99_npz} --out e.json", "99"),
        ("eval --samples {float_images_npz} --out e.json", "uint8"), ("eval --samples {no_images_npz} --out e.json", "images"),
        ("eval --samples {npz} --given image:{missing} --out e.json", "joint"), ("eval --samples {corrupt_npz} --out e.json", "corrupt"),
        ("eval --samples {npz} --ref {ref_npz} --out e.json", "ref"), ("eval --model {gen} --steps 100000 --out e.json", "--steps"),
        ("eval --samples {npz} --out {samples}", "samples"),
        # export
        ("export --model {missing} --out out", "no-such-thing"), ("export --model {tok} --out out", "generator"),
        ("export --model {gen} --out {samples}", "already holds"), ("export --model {gen} --out {pkg}/x", "package"),
        ("export --model {gen} --out out --dtype fp8", "fp8"), ("export --model {gen} --out out --classifier {missing}", "no-such-thing"),
        ("export --model {gen} --out out --classifier {tok}", "classifier"), ("export --model {gen} --out out --ref-data embedded", "--classifier"),
        ("export --model {gen} --out {gen}", "already holds"), ("export --model {gen} --out out --classifier {clf} --ref-data {missing}", "no-such-thing"),
        # app (a good start would serve forever: only refusals are cases)
        ("app --port 70000", "--port"), ("app --model {missing}", "no-such-thing"), ("app --model {tok}", "generator"),
        ("app --threads 0", "--threads"), ("app --host 256.1.1.1 --port 0", "256.1.1.1"), ("app --model {afile}", "afile"),
        # demo
        ("demo --out out --num 0", "--num"), ("demo --out out --samplers ''", "--samplers"), ("demo --out out --samplers beam", "beam"),
        ("demo --out out --model {missing}", "no-such-thing"), ("demo --out out --model {tok}", "generator"), ("demo --out out --samplers one-step", "one-step"),
        ("demo --out out --train --tokenizer-steps 0", "--tokenizer-steps"), ("demo --out out --train --steps 0", "--steps"),
        ("demo --out out --num 10000000", "--num"), ("demo --out out --model {gen} --samplers confidence", "classifier"),
        # distill
        ("distill --model {missing}", "no-such-thing"), ("distill --model {emigm} --out out", "continuous"), ("distill --model {shipped}", "package"),
        ("distill --model {gen} --out out --r-init 2", "r_init"), ("distill --model {gen} --out out --divergence bogus", "bogus"),
        ("distill --model {gen} --out out --preset bogus", "bogus"), ("distill --model {gen} --out out --beta 2", "beta"),
        ("distill --model {gen} --out out --embed-noise 1", "embed_noise"), ("distill --model {gen} --out out --cfg nan", "cfg"),
        ("distill --model {tok} --out out", "generator"), 
        # inpaint
        ("inpaint --image {missing}.png --mask {mask_png} --out out", "no-such-thing"), ("inpaint --image {image_png} --mask {missing}.png --out out", "no-such-thing"),
        ("inpaint --image {text_png} --mask {mask_png} --out out", "text.png"), ("inpaint --image {image_png} --mask {black_png} --out out", "black.png"),
        ("inpaint --image {image_png} --mask {mask_png} --out out --classes 10", "10"), ("inpaint --image {image_png} --mask {mask_png} --out out --num 0", "--num"),
        ("inpaint --image {image_png} --mask {mask_png} --out out --num 100000000", "--num"), ("inpaint --image {image_png} --mask {mask_png} --out out --steps 1000", "--steps"),
        ("inpaint --image {image_png} --mask {mask_png} --out out --acceptance 0.5", "acceptance"), ("inpaint --image {bin} --mask {mask_png} --out out", "bin"),
        ("inpaint --image {image_png} --mask {text_png} --out out", "text.png"), ("inpaint --image {emptydir} --mask {mask_png} --out out", "emptydir"),
        ("inpaint --image {image_png} --mask {mask_png} --out out --model {emigm} --sampler confidence --steps 2 --num 1", "confidence"),
        # tune
        ("tune --out out --nfe 0", "--nfe"), ("tune --out out --nfe abc", "--nfe"), ("tune --out out --nfe 1000000000", "--nfe"),
        ("tune --out out --trials 0", "--trials"), ("tune --out out --num 0", "--num"), ("tune --out out --seeds 1,1", "--seeds"),
        ("tune --out out --ref {missing}.npz", "no-such-thing"), ("tune --out out --ref {bin}", "bin"),
        ("tune --out out --model {missing}", "no-such-thing"), ("tune --out out --top 0", "--top"), ("tune --out out --refine -1", "--refine"),
        ("tune --out out --batch-size 0", "batch"), ("tune --out out --model {tok}", "generator"), ("tune --out out --num 10000000", "--num"),
    ]
    return c


VERB_BASES = {
    "train-tokenizer": "train-tokenizer --out out", "encode": "encode --tokenizer {tok} --out out", "train": "train --tokenizer {tok} --out out",
    "import": "import --format valeoai-v1 --generator {bin} --tokenizer {bin} --out out", "finetune-sg": "finetune-sg --model {gen} --out out",
    "train-critic": "train-critic --model {gen} --out out", "sample": "sample --out out", "refine": "refine --samples {npz} --out out",
    "train-classifier": "train-classifier --out out", "ref-stats": "ref-stats --out r.npz", "eval": "eval --samples {npz} --out e.json",
    "export": "export --model {gen} --out out", "app": "app --port 0", "demo": "demo --out out", "distill": "distill --model {gen} --out out",
    "inpaint": "inpaint --image {image_png} --mask {mask_png} --out out", "tune": "tune --out out",
}
OUT_BASES = {v: b.replace(" --out out", "") for v, b in VERB_BASES.items() if " --out out" in b}
DEVICE_BASES = {v: VERB_BASES[v] for v in ("train", "sample", "eval", "encode", "distill", "inpaint", "tune", "app", "ref-stats")}


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots`` (bytecode caches aside): size, mtime and, for
    files up to 1 MB, sha256; a change in any is a write."""
    seen: dict[str, tuple] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            seen[dirpath] = ("dir",)
            for name in filenames:
                p = Path(dirpath) / name
                st = p.stat()
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size <= 1 << 20 else ""
                seen[str(p)] = (st.st_size, st.st_mtime_ns, digest)
    return seen


def difference(before: dict, after: dict) -> list[str]:
    new = [f"+{k}" for k in after if k not in before]
    gone = [f"-{k}" for k in before if k not in after]
    changed = [f"~{k}" for k in after if k in before and after[k] != before[k]]
    return new + gone + changed


def classify(rc: int | None, err: str, written: list[str], expected: str) -> str:
    if rc is None:
        return "hang"
    if "Traceback (most recent call last)" in err or rc not in (0, 2):
        return "traceback"
    if rc == 0 or written:
        return "silent"
    lines = err.strip().splitlines()
    if len(lines) == 1 and lines[0].startswith("maskgen: error:") and expected.lower() in lines[0].lower():
        return "clean"
    return "misleading"


def run_case(argv: list[str], cwd: Path, watched: list[Path], timeout: float, env: dict) -> dict:
    before = snapshot(cwd, *watched)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "maskgen.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or "")
    seconds = time.perf_counter() - start
    return {"rc": rc, "stderr": err, "written": difference(before, snapshot(cwd, *watched)), "seconds": seconds}


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verb", default=None, help="only the cases of this verb")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds before a case counts as a hang")
    ap.add_argument("--json", default=None, help="also write every case's result here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="maskgen-hostile-"))
    w = root / "inputs"
    w.mkdir()
    print(f"preparing inputs in {w} ...", file=sys.stderr, flush=True)
    names = prepare(w)
    table = [(a, e) for a, e in cases() if args.verb is None or a.split()[0] == args.verb]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MASKGEN_PROGRESS_INTERVAL": "3600"}
    results = []
    for i, (text, expected) in enumerate(table, 1):
        argv_case = [a.format(**names) for a in shlex.split(text)]
        cwd = root / f"case-{i:03d}"
        cwd.mkdir()
        r = run_case(argv_case, cwd, [w, PACKAGE], args.timeout, env)
        r.update(case=text, verb=argv_case[0], expected=expected, category=classify(r["rc"], r["stderr"], r["written"], expected))
        results.append(r)
        line = (r["stderr"].strip().splitlines() or [""])[-1][:150]
        print(f"[{i}/{len(table)}] {r['category']:10s} {r['seconds']:5.1f}s maskgen {text}  ->  {line}", file=sys.stderr, flush=True)
    counts = Counter(r["category"] for r in results)
    print(f"\n{len(results)} cases: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in CATEGORIES))
    per_verb: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        per_verb[r["verb"]][r["category"]] += 1
    print("\n| verb | " + " | ".join(CATEGORIES) + " |\n|---|" + "---|" * len(CATEGORIES))
    for verb in sorted(per_verb):
        print(f"| {verb} | " + " | ".join(str(per_verb[verb].get(k, 0)) for k in CATEGORIES) + " |")
    failing = [r for r in results if r["category"] != "clean"]
    if failing:
        print("\nfailing cases:")
    for r in failing:
        last = (r["stderr"].strip().splitlines() or ["(no stderr)"])[-1][:300]
        wrote = f"; wrote {', '.join(x.replace(str(root), '') for x in r['written'][:4])}" if r["written"] else ""
        print(f"- {r['category']}: maskgen {r['case']} (rc {r['rc']}, expected {r['expected']!r}): {last}{wrote}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\nkept {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
