"""Bad input, as a user meets it: one line on stderr, exit code 2, no traceback, nothing written.

Each row of ``CASES`` (``bad_input_cases.py``) is (argv, a phrase of the message). The argv runs in a fresh, empty
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

from bad_input_cases import CASES, CRITIC, DISTILL, G, KL, SG, SHIPPED, VQ

from maskgen.cli import main
from maskgen.errors import MaskgenError

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
