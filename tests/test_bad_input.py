"""Bad input, as a user meets it: one line on stderr, exit code 2, no traceback, nothing written.

Each row of ``CASES`` is (argv, a phrase of the message). The argv runs in a fresh, empty
working folder holding only ``afile`` (a regular file), so relative outputs land there and
the test can see that nothing new appeared; the model folder and the input files are
watched too. Placeholders: ``MODEL`` and ``TOK`` are the session's tiny model and tokenizer,
``IN/name`` a prepared input file. Every row fails in validation, before any training or
sampling, so the table stays fast. CUDA is reported absent in every row, so the ``--device
cuda`` rows mean the same on a machine that has it.
"""

import pickle
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
}

SHIPPED = str(Path(maskgen.__file__).parent / "reference")  # a tokenizer other than the run's

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
    with open(folder / "pickled.npz", "wb") as f:
        pickle.dump({"images": images}, f)
    from maskgen.tokenizers import KLConfig, KLTokenizer

    KLTokenizer(KLConfig(width=8, token_dim=4, downsample=8)).save(folder / "kltok")
    return folder


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folders`` with its size and modification time."""
    seen = {}
    for folder in folders:
        for p in [folder, *folder.rglob("*")]:
            st = p.stat()
            seen[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file() else 0)
    return seen


@pytest.mark.parametrize("argv, phrase", CASES, ids=[f"{i:02d}-{a[0]}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_line_and_writes_nothing(argv, phrase, model_dir, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("a regular file\n")
    monkeypatch.chdir(work)
    names = {"MODEL": str(model_dir), "TOK": str(model_dir.parent / "tok"), "IN": str(inputs)}
    argv = [names.get(a, a.replace("IN/", f"{inputs}/", 1) if a.startswith("IN/") else a.replace("MODEL/", f"{model_dir}/", 1) if a.startswith("MODEL/") else a) for a in argv]
    before = snapshot(work, model_dir.parent, inputs)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskgen: error:"), err
    assert "Traceback" not in err
    assert phrase in lines[0], lines[0]
    assert snapshot(work, model_dir.parent, inputs) == before, "bad input must write nothing"


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
    from maskgen.pipeline import reference_dir

    monkeypatch.chdir(tmp_path)
    shipped = snapshot(reference_dir())
    assert main(["eval", "--num", "10", "--steps", "1", "--kid-subsets", "2"]) == 0
    assert (tmp_path / "eval.json").is_file()
    assert snapshot(reference_dir()) == shipped
    assert f"results written to {tmp_path / 'eval.json'}" in capsys.readouterr().out


def test_ref_stats_reports_the_file_it_wrote(tmp_path, capsys):
    from maskgen.pipeline import reference_dir

    network = f"classifier:{reference_dir() / 'classifier'}"
    assert main(["ref-stats", "--network", network, "--num", "20", "--out", str(tmp_path / "stats")]) == 0
    assert (tmp_path / "stats.npz").is_file()
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "stats.npz"))
