"""The command line as a user meets it: recipes, outputs, and one-line errors for bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from maskgen.cli import main
from maskgen.training.checkpoints import StepCheckpoints

from conftest import GEN, TOK


def run_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("maskgen: error:"), err
    return err


def test_sample_writes_grid_arrays_and_settings(model_dir, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--model", str(model_dir), "--num", "6", "--out", str(out), "--steps", "3", "--cfg", "1.0"]) == 0
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (6, 1, 32, 32) and data["images"].dtype == np.uint8
    assert data["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    assert data["tokens"].shape == (6, 64)
    meta = json.loads((out / "samples.json").read_text())
    assert meta["nfe"] == 6 and meta["sampler"]["steps"] == 3 and meta["sampler"]["guidance"][0] == {"kind": "cfg", "scale": 1.0, "ramp": "constant", "interval": None}
    assert Image.open(out / "grid.png").size[0] > 32
    # same seed, same images; another seed, other images
    assert main(["sample", "--model", str(model_dir), "--num", "6", "--out", str(tmp_path / "t"), "--steps", "3", "--cfg", "1.0"]) == 0
    assert np.array_equal(np.load(tmp_path / "t/samples.npz")["images"], data["images"])
    assert main(["sample", "--model", str(model_dir), "--num", "6", "--out", str(tmp_path / "u"), "--steps", "3", "--seed", "1"]) == 0
    assert not np.array_equal(np.load(tmp_path / "u/samples.npz")["tokens"], data["tokens"])


def test_spec_replays_a_sample_set_exactly(model_dir, tmp_path, capsys):
    first = tmp_path / "first"
    argv = ["sample", "--model", str(model_dir), "--num", "7", "--classes", "2,5", "--seed", "4", "--batch-size", "3", "--out", str(first),
            "--sampler", "confidence", "--steps", "5", "--choice-temperature", "9", "--annealing", "compound", "--top-p", "0.9",
            "--cfg", "1.5", "--cfg-interval", "0.1", "0.6", "--guidance", "blur", "--scale", "0.5", "--blur-sigma", "0.8"]
    assert main(argv) == 0
    assert main(["sample", "--spec", str(first / "samples.json"), "--out", str(tmp_path / "again")]) == 0
    a, b = np.load(first / "samples.npz"), np.load(tmp_path / "again" / "samples.npz")
    assert all(np.array_equal(a[k], b[k]) for k in ("images", "labels", "tokens"))
    assert b["labels"].tolist() == [2, 5, 2, 5, 2, 5, 2]
    spec = json.loads((first / "samples.json").read_text())["sampler"]
    assert spec["fill"] == {"kind": "confidence", "choice_temperature": 9.0, "annealing": "compound", "counts": "maskgit"}
    assert [g["kind"] for g in spec["guidance"]] == ["cfg", "blur"] and spec["guidance"][1]["sigma"] == 0.8
    # a spec describes the whole sampler: an extra sampler option is refused, not mixed in
    assert main(["sample", "--spec", str(first / "samples.json"), "--out", str(tmp_path / "x"), "--steps", "3"]) == 2
    assert "--spec describes the whole sampler" in capsys.readouterr().err


def test_yaml_recipe_sets_options_and_command_line_wins(model_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: %s\nnum: 4\nsteps: 2\nsampler: ancestral\nclasses: '7'\nout: %s\n" % (model_dir, tmp_path / "r"))
    assert main(["sample", "--config", str(recipe), "--steps", "3"]) == 0
    meta = json.loads((tmp_path / "r/samples.json").read_text())
    assert meta["num"] == 4 and meta["sampler"]["fill"] == {"kind": "ancestral", "equal_counts": False, "reveal_one": False, "time_grid": "exact"} and meta["sampler"]["steps"] == 3
    assert np.load(tmp_path / "r/samples.npz")["labels"].tolist() == [7, 7, 7, 7]


def test_encode_cache_then_train_and_resume(model_dir, tmp_path):
    tok = model_dir.parent / "tok"
    assert main(["encode", "--tokenizer", str(tok), "--data", "embedded", "--out", str(tmp_path / "cache")]) == 0
    assert (tmp_path / "cache/tokens.npy").exists()
    args = ["train", "--data", f"tokens:{tmp_path / 'cache'}", "--tokenizer", str(tok), "--out", str(tmp_path / "g"), *GEN]
    assert main(args[:-len(GEN)] + ["--steps", "4", *GEN[2:], "--stop-at", "2"]) == 0
    assert StepCheckpoints(tmp_path / "g").record()["step"] == 2
    assert main(args[:-len(GEN)] + ["--steps", "4", *GEN[2:], "--resume"]) == 0
    assert StepCheckpoints(tmp_path / "g").record()["step"] == 4


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train-tokenizer", "--data", "/no/such/dir", "--out", "X", *TOK], "does not exist"),
        (["train-tokenizer", "--data", "mnist-ish", "--out", "X", *TOK], "unknown data spec"),
        (["train", "--data", "embedded", "--tokenizer", "TOK", "--out", "X", "--schedule", "sigmoid"], "unknown schedule"),
        (["train", "--data", "embedded", "--tokenizer", "TOK", "--out", "X", "--masking", "blocks"], "unknown masking"),
        (["sample", "--model", "MODEL", "--out", "X", "--sampler", "beam"], "unknown fill rule 'beam'; choose from confidence, ancestral, halton, flow, critic"),
        (["sample", "--model", "MODEL", "--out", "X", "--sampler", "flow", "--choice-temperature", "25"], "--choice-temperature applies to the confidence fill rule"),
        (["sample", "--model", "MODEL", "--out", "X", "--sampler", "critic", "--temperature", "2"], "leave the draw temperature at 1"),
        (["sample", "--model", "MODEL", "--out", "X", "--spec", "/no/such/spec.json"], "spec file does not exist"),
        (["sample", "--model", "MODEL", "--out", "X", "--classes", "3,12"], "class id 12 out of range"),
        (["sample", "--model", "MODEL", "--out", "X", "--steps", "0"], "steps must be an integer >= 1"),
        (["sample", "--model", "MODEL", "--out", "X", "--temperature", "-1"], "temperature must be >= 0"),
        (["sample", "--model", "/no/such/model", "--out", "X"], "does not exist"),
        (["sample", "--model", "MODEL"], "--out is required"),
    ],
)
def test_bad_input_is_one_line(model_dir, tmp_path, capsys, argv, match):
    argv = [str(model_dir.parent / "tok") if a == "TOK" else str(model_dir) if a == "MODEL" else a for a in argv]
    argv = [str(tmp_path / "x") if a == "X" else a for a in argv]
    assert match in run_error(capsys, argv)


def test_corrupt_and_mismatched_checkpoints(model_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    weights = bad / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "corrupt or truncated" in run_error(capsys, ["sample", "--model", str(bad), "--out", str(tmp_path / "o")])

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    cfg = json.loads((other / "generator.json").read_text())
    cfg["config"]["depth"] = 2
    (other / "generator.json").write_text(json.dumps(cfg))
    err = run_error(capsys, ["sample", "--model", str(other), "--out", str(tmp_path / "o")])
    assert "missing keys: blocks.1." in err

    wide = tmp_path / "wide"
    shutil.copytree(model_dir, wide)
    cfg = json.loads((wide / "generator.json").read_text())
    cfg["config"]["width"] = 64
    (wide / "generator.json").write_text(json.dumps(cfg))
    assert "shape mismatch: " in run_error(capsys, ["sample", "--model", str(wide), "--out", str(tmp_path / "o")])


def test_recipe_errors(tmp_path, capsys):
    r = tmp_path / "r.yaml"
    r.write_text("stepz: 3\n")
    assert "unknown option 'stepz'" in run_error(capsys, ["sample", "--config", str(r)])
    r.write_text("steps: [1\n")
    assert "malformed YAML" in run_error(capsys, ["sample", "--config", str(r)])
    assert "recipe file does not exist" in run_error(capsys, ["sample", "--config", str(tmp_path / "none.yaml")])


def test_an_error_starts_on_a_fresh_line_after_a_progress_bar(monkeypatch, capsys):
    import sys

    from tqdm import tqdm

    import maskgen.cli as cli
    from maskgen.errors import MaskgenError

    def fails_mid_bar(args):
        bar = tqdm(total=10, file=sys.stderr)
        bar.update(3)
        raise MaskgenError("loss is nan at step 3")

    monkeypatch.setattr(cli, "run", fails_mid_bar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main(["sample", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "\nmaskgen: error: loss is nan at step 3\n" in err  # not glued to the bar's last line
    for bar in list(tqdm._instances):
        bar.close()


def test_help_shows_every_default_and_no_none(capsys):
    import argparse

    from maskgen.cli import build_parser

    _, verbs = build_parser()
    for name, p in verbs.items():
        text = p.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for a in p._actions:
            has_own = a.option_strings and a.default not in (None, argparse.SUPPRESS) and a.nargs != 0
            if has_own:
                assert "default" in a.help.lower(), (name, a.option_strings)
    with pytest.raises(SystemExit):
        main(["train-tokenizer", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--steps STEPS optimizer steps (default: 1500)" in shown and "--betas BETAS BETAS (default: 0.9 0.95)" in shown
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED sampling seed (default 0)" in shown and "(default: 1.0)" in shown  # --acceptance
