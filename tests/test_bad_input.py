"""Bad input, as a user meets it: one line on stderr, exit code 2, no traceback, nothing written.

Each row of ``CASES`` is (argv, a phrase of the message). The argv runs in a fresh, empty
working folder holding only ``afile`` (a regular file), so relative outputs land there and
the test can see that nothing new appeared; the model folder, the input files, the prepared
runs and the installed package's reference folder are watched too (tree, sizes, modification
times and sha256 of every file). Placeholders: ``MODEL`` and ``TOK`` are the session's tiny
model and tokenizer, ``IN/name`` a prepared input file, and the upper-case names of ``RUNS``
(alone, as ``NAME/...`` or after a ``prefix:``) the runs, caches and folders the ``runs``
fixture prepares. Every row fails in validation, before any training or sampling, so the
table stays fast. CUDA is reported absent in every row, so the ``--device cuda`` rows mean
the same on a machine that has it.
"""

import hashlib
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import maskgen
from maskgen.cli import main
from maskgen.errors import MaskgenError

CUDA = "CUDA is not available"
NOT_A_FOLDER = "is an existing file, not a folder"
T = ["train", "--tokenizer", "TOK", "--out", "out"]

INPUTS = {
    "betas.yaml": "betas: 0.9\n",
    "steps-null.yaml": "steps: null\n",
    "list.yaml": "- steps\n- 3\n",
    "list.json": "[1, 2]\n",
    "width-string.yaml": "width: abc\n",
    "width-float.yaml": "width: 12.5\n",
    "resume-string.yaml": "resume: 'yes'\n",
    "kind-bad.yaml": "kind: vqgan\n",
    "kl-weight-vq.yaml": "kl_weight: 1.0e-3\n",
    "corrupt.npz": b"PK\x03\x04 not really a zip",
    "binary.yaml": bytes(range(128, 256)),
    "empty-file.npz": b"",
    "afile": "not an image\n",
    "guidance-dict.json": json.dumps({"steps": 4, "guidance": {"kind": "cfg", "scale": 1.0}}),
    "seed-string.json": json.dumps({"sampler": {"steps": 4}, "run": {"seed": "abc", "num": 2}}),
    "fill-string.yaml": "fill: confidence\n",
    "steps-big.json": json.dumps({"steps": 1000}),
}

SHIPPED = str(Path(maskgen.__file__).parent / "reference")  # a tokenizer other than the run's
FIXTURES = Path(__file__).parent / "fixtures"

# the options the ``runs`` fixture trained each run with: a resume row repeats them, changing one thing
G = ["--steps", "3", "--batch-size", "16", "--width", "32", "--depth", "1", "--heads", "2", "--log-every", "1"]
SG = ["--steps", "2", "--batch-size", "16", "--log-every", "1"]
CRITIC = ["--steps", "2", "--batch-size", "16", "--heldout", "8", "--log-every", "1"]
DISTILL = ["--steps", "2", "--batch-size", "10", "--log-every", "1"]
VQ = ["--steps", "2", "--batch-size", "4", "--width", "8", "--codebook-size", "16", "--code-dim", "8", "--log-every", "1"]
KL = ["--kind", "kl", "--steps", "2", "--batch-size", "4", "--width", "8", "--token-dim", "4", "--log-every", "1"]
RUNS = {
    # token caches of TOK's grid (8x8) and codebook (16): two different ones, and one with codes past the codebook
    "CA": "cache-a", "CB": "cache-b", "CBAD": "cache-bad-codes", "CC": "cache-c",
    "IMGA": "images-a", "IMGB": "images-b",  # image folders: 2 classes x 6 RGB images each
    "RUN_GEN": "run-gen", "MODEL2": "model2", "RUN_SG": "run-sg", "RUN_CRITIC": "run-critic", "RUN_DISTILL": "run-distill",
    "RUN_TOK": "run-tok", "RUN_KL": "run-kl",
    "MODEL3": "model3",  # trained on CC, whose contents were replaced afterwards
    "REPLAY": "replay",  # samples of MODELC, whose generator was replaced afterwards
    "RS": "rs.npz",  # reference statistics of CLF, which was retrained in place afterwards
    "BAD": "bad-models",  # copies of MODEL with a broken generator.json: BAD/list, BAD/null, BAD/class-names, BAD/schedule
}

CASES = [
    # TrainConfig, from the command line and from recipes
    (T + ["--save-every", "0"], "save_every must be an integer >= 1, got 0"),
    (T + ["--log-every", "0"], "log_every must be an integer >= 1"),
    (T + ["--lr", "nan"], "lr must be a finite number"),
    (T + ["--lr", "-1"], "lr must be > 0"),
    (T + ["--min-lr", "inf"], "min_lr must be a finite number"),
    (T + ["--weight-decay", "-0.1"], "weight_decay must be >= 0"),
    (T + ["--grad-clip", "nan"], "grad_clip must be a finite number"),
    (T + ["--ema", "1"], "ema must be in [0, 1)"),
    (T + ["--betas", "0.9", "1.5"], "betas[1] must be in [0, 1)"),
    (T + ["--config", "IN/betas.yaml"], "betas must be a list of two numbers, got 0.9"),
    (T + ["--warmup", "-1"], "warmup must be an integer >= 0"),
    (T + ["--steps", "0"], "steps must be an integer >= 1"),
    (T + ["--batch-size", "0"], "batch_size must be an integer >= 1"),
    (T + ["--config", "IN/steps-null.yaml"], "steps is null"),
    (T + ["--stop-at", "0"], "--stop-at must be an integer >= 1, got 0"),
    (["train-tokenizer", "--out", "out", "--stop-at", "-3"], "--stop-at must be an integer >= 1"),
    # GeneratorConfig, VQConfig, ClassifierConfig, objectives
    (T + ["--depth", "0"], "depth must be an integer >= 1"),
    (T + ["--heads", "0"], "heads must be an integer >= 1"),
    (T + ["--width", "30", "--heads", "4"], "width 30 is not divisible by heads 4"),
    (T + ["--mlp-ratio", "0.5"], "mlp_ratio must be >= 1"),
    (T + ["--mlp-ratio", "nan"], "mlp_ratio must be a finite number"),
    (T + ["--width", "abc"], "argument --width: invalid int value: 'abc'"),
    (T + ["--config", "IN/width-string.yaml"], "width must be an integer, got 'abc'"),
    (T + ["--config", "IN/width-float.yaml"], "width must be an integer, got 12.5"),
    (T + ["--config", "IN/resume-string.yaml"], "resume must be true or false"),
    (T + ["--config", "IN/list.yaml"], "must be a mapping"),
    (T + ["--config", "IN/list.json"], "must be a mapping"),
    (T + ["--t-min", "1"], "t_min must be in [0, 1)"),
    (T + ["--label-smoothing", "nan"], "label_smoothing must be a finite number"),
    (T + ["--cond-drop", "2"], "cond_drop must be in [0, 1]"),
    (T + ["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    (["train-tokenizer", "--out", "out", "--commitment", "nan"], "commitment must be a finite number"),
    (["train-tokenizer", "--out", "out", "--code-dim", "0"], "code_dim must be a positive integer"),
    # the tokenizer kinds: an unknown one, an option of the other kind, a KL tokenizer where codes are needed
    (["train-tokenizer", "--out", "out", "--kind", "diffusion"], "unknown --kind 'diffusion'; expected vq or kl"),
    (["train-tokenizer", "--out", "out", "--config", "IN/kind-bad.yaml"], "unknown --kind 'vqgan'"),
    (["train-tokenizer", "--out", "out", "--kl-weight", "0.1"], "--kl-weight is an option of --kind kl, not of --kind vq"),
    (["train-tokenizer", "--out", "out", "--config", "IN/kl-weight-vq.yaml"], "--kl-weight is an option of --kind kl"),
    (["train-tokenizer", "--out", "out", "--token-dim", "8", "--kl-weight", "0.1"], "--token-dim, --kl-weight are options of --kind kl"),
    (["train-tokenizer", "--out", "out", "--kind", "kl", "--codebook-size", "16"], "--codebook-size is an option of --kind vq, not of --kind kl"),
    (["train-tokenizer", "--out", "out", "--kind", "kl", "--kl-weight", "nan"], "kl_weight must be a finite number"),
    (["train-tokenizer", "--out", "out", "--kind", "kl", "--kl-weight", "inf"], "kl_weight must be a finite number"),
    (["train-tokenizer", "--out", "out", "--kind", "kl", "--kl-weight", "-0.1"], "kl_weight must be >= 0"),
    (["train-tokenizer", "--out", "out", "--kind", "kl", "--token-dim", "0"], "token_dim must be a positive integer"),
    (["train", "--tokenizer", "IN/kltok", "--out", "out", "--label-smoothing", "0.1"], "label_smoothing applies to cross-entropy over codes"),
    (["train-classifier", "--out", "out", "--width", "12"], "width must be a multiple of 8"),
    (["finetune-sg", "--model", "MODEL", "--error-rate", "nan"], "error_rate must be a finite number"),
    (["finetune-sg", "--model", "MODEL", "--reg-weight", "-1"], "reg_weight must be >= 0"),
    (["train-critic", "--model", "MODEL", "--draw-temperature", "0"], "draw_temperature must be > 0"),
    # --device cuda without CUDA, every verb that has --device
    (["train-tokenizer", "--out", "out", "--device", "cuda"], CUDA),
    (["encode", "--tokenizer", "TOK", "--out", "out", "--device", "cuda"], CUDA),
    (T + ["--device", "cuda"], CUDA),
    (["finetune-sg", "--model", "MODEL", "--device", "cuda"], CUDA),
    (["train-critic", "--model", "MODEL", "--device", "cuda"], CUDA),
    (["distill", "--model", "MODEL", "--device", "cuda"], CUDA),
    (["sample", "--model", "MODEL", "--out", "out", "--device", "cuda"], CUDA),
    (["refine", "--model", "MODEL", "--samples", "IN/samples.npz", "--out", "out", "--device", "cuda"], CUDA),
    (["train-classifier", "--out", "out", "--device", "cuda:1"], CUDA),
    (["ref-stats", "--out", "r.npz", "--device", "cuda"], CUDA),
    (["eval", "--samples", "IN/samples.npz", "--device", "cuda"], CUDA),
    (T + ["--device", "gpu"], "unknown device 'gpu'"),
    # --out: an existing file, or under one, for every verb that writes a folder or a file
    (["train-tokenizer", "--out", "afile"], NOT_A_FOLDER),
    # a folder holding a run is continued or replaced on request, never silently overwritten
    (["train", "--tokenizer", "TOK", "--out", "MODEL"], "already holds a training run (step 3 of 3): continue it with --resume or replace it with --overwrite"),
    (["train", "--tokenizer", "TOK", "--out", "MODEL", "--resume", "--overwrite"], "give one"),
    (["train", "--tokenizer", "TOK", "--out", "MODEL", "--resume", "--lr", "0.5"], "--resume would change the run in"),
    (["train", "--tokenizer", SHIPPED, "--out", "MODEL", "--resume"], "is not the tokenizer of this run"),
    (["train", "--tokenizer", "TOK", "--out", "MODEL", "--resume", "--attn-dropout", "0.1"], "attn_dropout 0.0 -> 0.1"),
    (["train", "--tokenizer", "TOK", "--out", "MODEL", "--resume", "--norm-eps", "1e-6"], "norm_eps 1e-05 -> 1e-06"),
    (["train", "--tokenizer", "TOK", "--out", "MODEL", "--resume", "--uncond", "mask"], "uncond null -> mask"),
    (["train", "--tokenizer", "TOK", "--out", "MODEL", "--resume", "--schedule", "linear", "--masking", "bernoulli"], "schedule cosine -> linear; masking count -> bernoulli"),
    (["encode", "--tokenizer", "TOK", "--out", "afile"], NOT_A_FOLDER),
    (["train", "--tokenizer", "TOK", "--out", "afile"], NOT_A_FOLDER),
    (["train", "--tokenizer", "TOK", "--out", "afile/gen"], "afile is a file, not a folder"),
    (["finetune-sg", "--model", "MODEL", "--out", "afile"], NOT_A_FOLDER),
    (["train-critic", "--model", "MODEL", "--out", "afile"], NOT_A_FOLDER),
    (["distill", "--model", "MODEL", "--out", "afile"], NOT_A_FOLDER),
    (["sample", "--model", "MODEL", "--out", "afile"], NOT_A_FOLDER),
    (["refine", "--model", "MODEL", "--samples", "IN/samples.npz", "--out", "afile"], NOT_A_FOLDER),
    (["train-classifier", "--out", "afile"], NOT_A_FOLDER),
    (["export", "--model", "MODEL", "--out", "afile"], NOT_A_FOLDER),
    (["demo", "--out", "afile"], NOT_A_FOLDER),
    # rule: an output holding something else is refused without --overwrite; the package never
    (["finetune-sg", "--model", SHIPPED, "--stop-at", "1"], "is inside the installed maskgen package"),
    (["train-critic", "--model", SHIPPED, "--stop-at", "1"], "is inside the installed maskgen package"),
    (["distill", "--model", SHIPPED, "--stop-at", "1"], "is inside the installed maskgen package"),
    (["sample", "--model", "MODEL", "--out", SHIPPED + "/samples", "--overwrite"], "is inside the installed maskgen package"),
    (["sample", "--model", "MODEL", "--out", "MODEL"], "already holds"),
    (["eval", "--model", "MODEL", "--out", "MODEL/generator.json"], "already exists; give another --out, or --overwrite"),
    (["export", "--model", "MODEL", "--out", "IN"], "already holds"),
    (["train", "--tokenizer", "TOK", "--out", "IN"], "already holds"),
    (["finetune-sg", "--model", "MODEL", "--out", "IN"], "already holds"),
    (["distill", "--model", "MODEL", "--out", "IN"], "already holds"),
    (["demo", "--out", "IN"], "already holds"),
    # rule: every file maskgen reads is validated by type, every failure is one line
    (["sample", "--model", "MODEL", "--spec", "IN/binary.yaml", "--out", "out"], "is not a text file"),
    (["sample", "--config", "IN/binary.yaml", "--out", "out"], "is not a text file"),
    (["sample", "--model", "MODEL", "--classes", "10", "--num", "2", "--out", "out"], "--classes: class id 10 out of range: the model has classes 0..9"),
    (["demo", "--samplers", "", "--out", "out"], "names an empty sampler"),
    (["ref-stats", "--out", "IN/folder.npz"], "is an existing folder, not a file"),
    (["eval", "--samples", "IN/samples.npz", "--out", "IN"], "is an existing folder, not a file"),
    # options of one verb
    (["export", "--model", "MODEL", "--out", "out", "--ref-data", "embedded"], "needs --classifier"),
    (["train-critic", "--model", "MODEL", "--heldout", "-5"], "--heldout must be an integer >= 1, got -5"),
    (["train-critic", "--model", "MODEL", "--heldout", "0"], "--heldout must be an integer >= 1, got 0"),
    (["sample", "--model", "MODEL", "--out", "out", "--acceptance", "-0.5"], "--acceptance rate must be in (0, 1], got -0.5"),
    # continuous-token options where they do not apply, and bad head sampler values
    (T + ["--arch", "mae"], "--arch: continuous-token options"),
    (T + ["--head-draws", "0"], "--head-draws: continuous-token options"),
    (["sample", "--model", "MODEL", "--out", "out", "--head-steps", "4"], "head sampler settings apply to a continuous-token generator"),
    (["sample", "--model", "MODEL", "--out", "out", "--head-sampler", "euler"], "unknown head sampler 'euler'"),
    (["sample", "--model", "MODEL", "--out", "out", "--head-sampler", "ddpm", "--head-temperature", "nan"], "temperature must be a finite number"),
    (["sample", "--model", "MODEL", "--out", "out", "--head-sampler", "ddpm", "--head-steps", "0"], "steps must be an integer >= 1"),
    (["sample", "--model", "MODEL", "--out", "out", "--acceptance", "nan"], "--acceptance rate must be a finite number"),
    (["eval", "--samples", "IN/samples.npz", "--acceptance", "2"], "--acceptance rate must be in (0, 1]"),
    (["eval", "--samples", "IN/samples.npz", "--kid-subsets", "0"], "--kid-subsets must be an integer >= 1"),
    (["eval", "--samples", "IN/samples.npz", "--is-mode", "tf"], "unknown --is-mode 'tf'"),
    (["refine", "--model", "MODEL", "--samples", "IN/samples.npz", "--out", "out", "--fraction", "0"], "--fraction must be in (0, 1]"),
    (["ref-stats", "--out", "r.npz", "--num", "0"], "--num must be an integer >= 1"),
    (["encode", "--tokenizer", "TOK", "--out", "out", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["demo", "--out", "out", "--num", "0"], "--num must be an integer >= 1"),
    (["demo", "--out", "out", "--samplers", "maskgit,beam"], "unknown demo sampler 'beam'"),
    # unreadable samples files
    (["refine", "--model", "MODEL", "--samples", "IN/corrupt.npz", "--out", "out"], "cannot read samples"),
    (["refine", "--model", "MODEL", "--samples", "IN/empty-file.npz", "--out", "out"], "cannot read samples"),
    (["refine", "--model", "MODEL", "--samples", "IN/pickled.npz", "--out", "out"], "pickled"),
    (["refine", "--model", "MODEL", "--samples", "IN/objects.npz", "--out", "out"], "pickled"),
    (["refine", "--model", "MODEL", "--samples", "IN/no-samples.npz", "--out", "out"], "nothing to refine"),
    (["refine", "--model", "MODEL", "--samples", "IN/images-only.npz", "--out", "out"], "has no tokens, labels array"),
    (["eval", "--samples", "IN/corrupt.npz"], "cannot read samples"),
    (["eval", "--samples", "IN/empty-file.npz"], "cannot read samples"),
    (["eval", "--samples", "IN/pickled.npz"], "pickled"),
    (["eval", "--samples", "IN/objects.npz"], "pickled"),
    (["eval", "--samples", "IN/no-samples.npz"], "holds no images"),
    (["eval", "--samples", "IN/single.npy"], "a single array, not an .npz"),
    # rule 2: --resume compares everything that decides what is trained (training/checkpoints.resume_changes)
    (["train", "--tokenizer", "TOK", "--out", "RUN_GEN", "--resume", "--data", "tokens:CB", *G], "data fingerprint"),
    (["train", "--tokenizer", "TOK", "--out", "RUN_GEN", "--resume", "--data", "tokens:CA", *G, "--width", "64"], "width 32 -> 64"),
    (["train-tokenizer", "--out", "RUN_TOK", "--resume", "--data", "folder:IMGA", *VQ, "--commitment", "0.5"], "commitment 0.25 -> 0.5"),
    (["train-tokenizer", "--out", "RUN_TOK", "--resume", "--data", "folder:IMGB", *VQ], "data fingerprint"),
    (["train-tokenizer", "--out", "RUN_TOK", "--resume", "--data", "embedded", *VQ], "data fingerprint"),  # grey: not "shape mismatch of decoder.6"
    (["train-tokenizer", "--out", "RUN_KL", "--resume", "--data", "folder:IMGA", *KL, "--kl-weight", "0.5"], "kl_weight"),
    (["finetune-sg", "--model", "MODEL2", "--data", "tokens:CA", "--out", "RUN_SG", "--resume", *SG], "generator sha256"),
    (["finetune-sg", "--model", "MODEL", "--data", "tokens:CB", "--out", "RUN_SG", "--resume", *SG], "data fingerprint"),
    (["train-critic", "--model", "MODEL2", "--data", "tokens:CA", "--out", "RUN_CRITIC", "--resume", *CRITIC], "generator sha256"),
    (["distill", "--model", "MODEL2", "--out", "RUN_DISTILL", "--resume", *DISTILL], "teacher sha256"),
    # rule 3: what a folder records resolves the same from anywhere, and a changed content is refused
    (["finetune-sg", "--model", "MODEL3", "--out", "out", *SG], "now holds other data"),
    (["train-critic", "--model", "MODEL3", "--out", "out", *CRITIC], "now holds other data"),
    (["sample", "--spec", "REPLAY/samples.json", "--out", "out"], "was sampled from the generator with sha256"),
    (["eval", "--spec", "REPLAY/samples.json", "--num", "2"], "was sampled from the generator with sha256"),
    (["eval", "--samples", "IN/samples.npz", "--ref", "RS"], "were made with"),
    # rule 5: every file maskgen reads is validated by type
    (["sample", "--model", "BAD/list", "--num", "2", "--out", "out"], "must hold a JSON object (names and values), got list"),
    (["sample", "--model", "BAD/null", "--num", "2", "--out", "out"], "must hold a JSON object (names and values), got null"),
    (["sample", "--model", "BAD/class-names", "--num", "2", "--out", "out"], "class_names must be a list of names, got 5"),
    (["sample", "--model", "BAD/schedule", "--num", "2", "--out", "out"], "time_schedule: unknown schedule 'bogus'"),
    (["sample", "--model", "MODEL", "--spec", "IN/guidance-dict.json", "--out", "out"], "guidance must be a list of guidance specs"),
    (["sample", "--model", "MODEL", "--spec", "IN/seed-string.json", "--out", "out"], "run.seed in"),
    (["sample", "--model", "MODEL", "--spec", "IN/fill-string.yaml", "--out", "out"], "fill must be a mapping"),
    (["refine", "--model", SHIPPED + "/emigm", "--samples", "IN/samples.npz", "--out", "out"], "holds a continuous-token generator"),
    (["train-classifier", "--data", "tokens:CA", "--out", "out"], "train-classifier reads images, but --data"),
    (["train-tokenizer", "--data", "tokens:CA", "--out", "out"], "train-tokenizer reads images, but --data"),
    (["ref-stats", "--data", "tokens:CA", "--out", "r.npz"], "ref-stats reads images, but --data"),
    (["encode", "--tokenizer", "TOK", "--data", "tokens:CA", "--out", "out"], "encode reads images, but --data"),
    (["train", "--data", "tokens:CBAD", "--tokenizer", "TOK", "--out", "out", *G], "holds code 39, outside the codebook 0..15"),
    (["sample", "--model", "MODEL", "--num", "1000000000000", "--out", "out"], "is more than one run draws (at most 1,000,000"),
    (["sample", "--model", "MODEL", "--num", "1e12", "--out", "out"], "invalid int value: '1e12'"),
    (["eval", "--samples", "IN/labels-past.npz"], "sample label 10 is out of range: the classifier scores classes 0..9"),
    (["eval", "--samples", "IN/labels-negative.npz"], "sample label -1 is out of range"),
    (["ref-stats", "--data", "folder:IMGA", "--num", "1000", "--out", "r.npz"], "holds only 12 images"),
    (["import", "--format", "mar", "--generator", str(FIXTURES / "mar_tiny.pth"), "--tokenizer", str(FIXTURES / "mar_vae_tiny.ckpt"), "--out", "out", "--image-size", "8"], "--heads N"),
    # rule 6: no request makes work without bound (cli_checks.refuse_unbounded_work)
    (["sample", "--model", "MODEL", "--steps", "100000", "--out", "out"], "100000 steps for 64 tokens"),
    (["sample", "--steps", "65", "--out", "out"], "65 steps for 64 tokens: the shipped model"),
    (["sample", "--model", "MODEL", "--spec", "IN/steps-big.json", "--out", "out"], "1000 steps for 64 tokens"),
    (["eval", "--model", "MODEL", "--steps", "65"], "65 steps for 64 tokens"),
    (["refine", "--model", "MODEL", "--samples", "IN/samples.npz", "--steps", "65", "--out", "out"], "65 steps for 64 tokens"),
    (["inpaint", "--model", "MODEL", "--image", "IN/afile", "--mask", "IN/afile", "--steps", "65", "--out", "out"], "65 steps for 64 tokens"),
    (["tune", "--model", "MODEL", "--nfe", "4,1000000000", "--out", "out"], "--nfe 1000000000: no sampler reaches that budget"),
    (["tune", "--out", "out", "--num", "10000000"], "--num 10,000,000: more samples than one run draws"),
    (["demo", "--out", "out", "--num", "10000000"], "--num 10,000,000 samples per sampler is more than one run draws"),
    (["inpaint", "--image", "IN/afile", "--mask", "IN/afile", "--num", "100000000", "--out", "out"], "--num 100,000,000 is more than one run draws"),
    # found by benchmarks/hostile_pass.py: a finished cache and another verb's folder are outputs like any other
    (["encode", "--tokenizer", "TOK", "--out", "CA"], "already holds"),
    (["tune", "--out", "IN"], "already holds"),
    # ... every cheap check before any work, and nothing left behind by a refused run
    (["tune", "--out", "out", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["tune", "--out", "out", "--nfe", "0"], "--nfe: budget 0 is below one sampling step"),
    (["finetune-sg", "--model", "nowhere"], "nowhere/generator.json"),
    (["import", "--format", "valeoai-v1", "--generator", "nowhere.pth", "--tokenizer", "IN/afile", "--out", "out"], "--generator nowhere.pth: no such file"),
    (["import", "--format", "valeoai-v1", "--generator", "IN/afile", "--tokenizer", "IN/afile", "--out", "out", "--image-size", "0"], "--image-size must be an integer >= 1"),
    (["train-critic", "--model", "MODEL", "--out", "out", "--width", "30", "--heads", "4"], "width 30 is not divisible by heads 4"),
    (["export", "--model", "MODEL", "--out", "out", "--classifier", "TOK"], "holds no classifier"),
    (["export", "--model", "MODEL", "--out", "out", "--classifier", SHIPPED + "/classifier", "--ref-data", "folder:nowhere"], "data path does not exist"),
    (["eval", "--samples", "IN/samples.npz", "--ref", "IN/pickled.npz"], "is not an .npz of plain arrays (pickled or other data is never loaded)"),
    (["inpaint", "--image", "IN", "--mask", "IN/afile", "--out", "out"], "is a folder, not an image file"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The recipes and sample files the rows read (``IN/...``)."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "folder.npz").mkdir()
    for name, content in INPUTS.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    images = np.zeros((2, 1, 32, 32), np.uint8)
    np.savez(folder / "samples.npz", images=images, labels=np.zeros(2, np.int64), tokens=np.zeros((2, 64), np.int64))
    np.savez(folder / "no-samples.npz", images=images[:0], labels=np.zeros(0, np.int64), tokens=np.zeros((0, 64), np.int64))
    np.savez(folder / "images-only.npz", images=images)
    np.savez(folder / "objects.npz", images=np.array([{"x": 1}], dtype=object), labels=np.zeros(1), tokens=np.array([None], dtype=object))
    np.save(folder / "single.npy", images)
    np.savez(folder / "labels-past.npz", images=images, labels=np.array([3, 10]))
    np.savez(folder / "labels-negative.npz", images=images, labels=np.array([-1, 0]))
    with open(folder / "pickled.npz", "wb") as f:
        pickle.dump({"images": images}, f)
    from maskgen.tokenizers import KLConfig, KLTokenizer

    KLTokenizer(KLConfig(width=8, token_dim=4, downsample=8)).save(folder / "kltok")
    return folder


def _cache(folder: Path, seed: int, codes: int = 16, n: int = 64) -> None:
    """A token cache as ``maskgen encode`` writes it, of TOK's grid (8x8) and codebook (16)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    np.save(folder / "tokens.npy", rng.integers(0, codes, size=(n, 8, 8)).astype(np.int16))
    np.save(folder / "labels.npy", (np.arange(n) % 10).astype(np.int64))
    meta = {"format": "maskgen-token-cache-v1", "kind": "tokens", "codebook_size": 16, "grid": [8, 8], "num_classes": 10,
            "class_names": [str(i) for i in range(10)], "count": n, "views": 1, "dtype": "int16", "tokenizer_sha256": None}
    (folder / "meta.json").write_text(json.dumps(meta))


def _images(folder: Path, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("generator.json", "generator.safetensors", "tokenizer.json", "tokenizer.safetensors"):
        shutil.copyfile(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def runs(model_dir, tmp_path_factory):
    """The folders of ``RUNS``: caches, image folders, runs stopped at step 1 (resumable) and
    model folders whose recorded data, generator or classifier changed after they were written."""
    root = tmp_path_factory.mktemp("runs")
    p = {k: root / v for k, v in RUNS.items()}
    tok, model = str(model_dir.parent / "tok"), str(model_dir)
    for key, seed in (("CA", 0), ("CB", 1), ("CC", 0)):
        _cache(p[key], seed)
    _cache(p["CBAD"], 2, codes=40)
    _images(p["IMGA"], 0)
    _images(p["IMGB"], 1)
    ok = lambda argv: main([str(a) for a in argv]) == 0  # noqa: E731
    assert ok(["train", "--tokenizer", tok, "--data", f"tokens:{p['CA']}", "--out", p["RUN_GEN"], *G, "--stop-at", "1"])
    assert ok(["train", "--tokenizer", tok, "--data", f"tokens:{p['CA']}", "--out", p["MODEL2"], *G, "--seed", "1"])
    assert ok(["finetune-sg", "--model", model, "--data", f"tokens:{p['CA']}", "--out", p["RUN_SG"], *SG, "--stop-at", "1"])
    assert ok(["train-critic", "--model", model, "--data", f"tokens:{p['CA']}", "--out", p["RUN_CRITIC"], *CRITIC, "--stop-at", "1"])
    assert ok(["distill", "--model", model, "--out", p["RUN_DISTILL"], *DISTILL, "--stop-at", "1"])
    assert ok(["train-tokenizer", "--data", f"folder:{p['IMGA']}", "--out", p["RUN_TOK"], *VQ, "--stop-at", "1"])
    assert ok(["train-tokenizer", "--data", f"folder:{p['IMGA']}", "--out", p["RUN_KL"], *KL, "--stop-at", "1"])
    # rule 3: the recorded data, generator and classifier change after the folder that names them was written
    assert ok(["train", "--tokenizer", tok, "--data", f"tokens:{p['CC']}", "--out", p["MODEL3"], *G])
    for name in ("tokens.npy", "labels.npy", "meta.json"):
        shutil.copyfile(p["CB"] / name, p["CC"] / name)
    modelc = _copy_model(model_dir, root / "modelc")
    assert ok(["sample", "--model", modelc, "--num", "2", "--steps", "2", "--out", p["REPLAY"]])
    for name in ("generator.json", "generator.safetensors"):
        shutil.copyfile(p["MODEL2"] / name, modelc / name)
    from maskgen.models.classifier import ImageClassifier

    clf = root / "clf"
    shutil.copytree(Path(SHIPPED) / "classifier", clf)
    assert ok(["ref-stats", "--data", "embedded", "--network", f"classifier:{clf}", "--num", "20", "--out", p["RS"]])
    torch.manual_seed(1)
    ImageClassifier(ImageClassifier.load(clf).config).save(clf)  # retrained in place
    # rule 5: broken generator.json files
    for name, edit in (("list", lambda r: [1, 2]), ("null", lambda r: None), ("class-names", lambda r: {**r, "class_names": 5}),
                       ("schedule", lambda r: {**r, "config": {**r["config"], "time_schedule": "bogus"}})):
        folder = _copy_model(model_dir, p["BAD"] / name)
        record = json.loads((folder / "generator.json").read_text())
        (folder / "generator.json").write_text(json.dumps(edit(record)))
    return p


def snapshot(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under ``folders`` with its size, modification time and sha256."""
    seen = {}
    for folder in folders:
        for p in [folder, *folder.rglob("*")]:
            st = p.stat()
            if p.is_file():
                seen[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                seen[str(p)] = (-1, 0, "")
    return seen


def _placed(arg: str, names: dict[str, str]) -> str:
    """``arg`` with each placeholder (a key of ``names``, alone, before ``/`` or after ``prefix:``) replaced."""
    return re.sub(r"(^|:)([A-Z][A-Z0-9_]*)(?=/|$)", lambda m: m.group(1) + names.get(m.group(2), m.group(2)), arg)


def assert_refused(argv: list[str], phrase: str, watched: list[Path], capsys) -> None:
    """``maskgen argv`` exits 2 with one stderr line holding ``phrase``, no traceback, and
    leaves every file and folder under ``watched`` as it was."""
    before = snapshot(*watched)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskgen: error:"), err
    assert "Traceback" not in err
    assert phrase in lines[0], lines[0]
    assert snapshot(*watched) == before, "bad input must write nothing"


@pytest.mark.parametrize("argv, phrase", CASES, ids=[f"{i:02d}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_line_and_writes_nothing(argv, phrase, model_dir, inputs, runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("a regular file\n")
    monkeypatch.chdir(work)
    names = {"MODEL": str(model_dir), "TOK": str(model_dir.parent / "tok"), "IN": str(inputs), **{k: str(v) for k, v in runs.items()}}
    argv = [_placed(a, names) for a in argv]
    assert_refused(argv, phrase, [work, model_dir.parent, inputs, runs["CA"].parent, Path(SHIPPED)], capsys)


def test_folders_record_absolute_paths_and_content_identities(runs, model_dir):
    """Rule 3: the training data, the model in samples.json and the classifier in reference
    statistics are recorded as absolute paths plus their content's identity."""
    record = json.loads((runs["RUN_SG"] / "self-guidance.json").read_text())
    assert record["data"] == f"tokens:{runs['CA']}" and len(record["data_fingerprint"]) == 64
    assert record["generator"] == str(model_dir.resolve()) and record["generator_sha256"]
    replay = json.loads((runs["REPLAY"] / "samples.json").read_text())
    assert Path(replay["run"]["model"]).is_absolute() and len(replay["run"]["model_sha256"]) == 64
    side = json.loads(runs["RS"].with_suffix(".json").read_text())
    assert side["network"] == f"classifier:{runs['CA'].parent / 'clf'}" and side["network_sha256"]


def test_an_old_model_folder_resolves_its_data_from_the_working_folder(runs, model_dir, tmp_path, monkeypatch, capsys):
    """A folder written before data identities existed (a relative data path, no fingerprint)
    still works: the path is resolved as before, from the current folder."""
    old = _copy_model(runs["MODEL2"], tmp_path / "old")
    record = json.loads((old / "generator.json").read_text())
    record["data"] = "tokens:cache"
    del record["data_fingerprint"]
    (old / "generator.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    assert_refused(["finetune-sg", "--model", str(old), "--out", "sg", *SG], "data path does not exist: cache", [tmp_path], capsys)
    shutil.copytree(runs["CA"], tmp_path / "cache")
    assert main(["finetune-sg", "--model", str(old), "--out", "sg", *SG]) == 0
    assert json.loads((tmp_path / "sg" / "self-guidance.json").read_text())["data"] == f"tokens:{tmp_path / 'cache'}"


def test_an_old_reference_sidecar_is_checked_against_its_statistics(runs, inputs, tmp_path, monkeypatch, capsys):
    """An older sidecar names its classifier relative to where ref-stats ran: from another folder
    that may be another classifier of the same name, which the statistics' sha256 refuses."""
    shutil.copyfile(runs["RS"], tmp_path / "rs.npz")
    side = json.loads(runs["RS"].with_suffix(".json").read_text())
    (tmp_path / "rs.json").write_text(json.dumps({**side, "network": "classifier:clf"}))
    shutil.copytree(runs["CA"].parent / "clf", tmp_path / "clf")  # the retrained one, under the old name
    monkeypatch.chdir(tmp_path)
    assert_refused(["eval", "--samples", str(inputs / "samples.npz"), "--ref", "rs.npz", "--out", "e.json"], "were made with", [tmp_path], capsys)


def test_the_command_line_bound_on_steps_leaves_the_library_loop_alone(generator):
    """Rule 6 is the CLI's: from Python, T > N still runs (the counted rules' documented behaviour)."""
    from conftest import build_sampler
    from maskgen.sampling.draw import ImageNoise

    result = build_sampler(generator, steps=generator.config.num_tokens + 4)(torch.tensor([0, 1]), ImageNoise(0, [0, 1], "cpu"))
    assert (result.tokens < generator.config.codebook_size).all()


def test_config_dataclasses_refuse_what_the_cli_refuses():
    """The Python API gets the same one-line messages: the checks live in ``__post_init__``."""
    from maskgen.models.classifier import ClassifierConfig
    from maskgen.models.transformer import GeneratorConfig
    from maskgen.tokenizers import VQConfig
    from maskgen.training.trainer import TrainConfig

    for build, match in [
        (lambda: GeneratorConfig(width="abc"), "width must be an integer"),
        (lambda: GeneratorConfig(grid=(4, 4.5)), r"grid\[1\] must be an integer"),
        (lambda: TrainConfig(betas=0.9), "betas must be a pair"),
        (lambda: TrainConfig(betas=(0.9, float("nan"))), r"betas\[1\] must be a finite number"),
        (lambda: TrainConfig(steps=None), "steps must be an integer"),
        (lambda: TrainConfig(lr="1e-3"), "lr must be a finite number"),
        (lambda: TrainConfig(min_lr=1.0, lr=0.1), "min_lr must be in"),
        (lambda: TrainConfig(bf16="no"), "bf16 must be true or false"),
        (lambda: VQConfig(ema_decay=float("inf")), "ema_decay must be a finite number"),
        (lambda: ClassifierConfig(dropout="0.1"), "dropout must be a finite number"),
    ]:
        with pytest.raises(MaskgenError, match=match):
            build()


def test_eval_on_the_shipped_models_writes_to_the_current_folder(tmp_path, monkeypatch, capsys):
    from maskgen.pipelines import reference_dir

    monkeypatch.chdir(tmp_path)
    shipped = snapshot(reference_dir())
    assert main(["eval", "--num", "10", "--steps", "1", "--kid-subsets", "2"]) == 0
    assert (tmp_path / "eval.json").is_file()
    assert snapshot(reference_dir()) == shipped
    assert f"results written to {tmp_path / 'eval.json'}" in capsys.readouterr().out


def test_ref_stats_reports_the_file_it_wrote(tmp_path, capsys):
    from maskgen.pipelines import reference_dir

    network = f"classifier:{reference_dir() / 'classifier'}"
    assert main(["ref-stats", "--network", network, "--num", "20", "--out", str(tmp_path / "stats")]) == 0
    assert (tmp_path / "stats.npz").is_file()
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "stats.npz"))
