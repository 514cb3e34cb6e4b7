"""The continuous-token (eMIGM) path through the CLI, on tiny models: train a KL tokenizer,
train a generator on it, sample with each head sampler, replay, and refuse what does not apply."""

import json

import numpy as np
import pytest

from maskgen.cli import main

KL = ["--kind", "kl", "--steps", "3", "--batch-size", "8", "--width", "8", "--token-dim", "4", "--downsample", "8", "--log-every", "1"]
CGEN = ["--steps", "3", "--batch-size", "8", "--width", "32", "--depth", "1", "--heads", "2", "--head-width", "16", "--head-depth", "1", "--head-draws", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def continuous_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("continuous")
    assert main(["train-tokenizer", "--data", "embedded", "--out", str(root / "kl"), *KL]) == 0
    assert main(["train", "--data", "embedded", "--tokenizer", str(root / "kl"), "--out", str(root / "gen"), "--arch", "mae", "--schedule", "exp", "--masking", "bernoulli", *CGEN]) == 0
    return root


def test_train_writes_a_continuous_model_folder(continuous_dir):
    record = json.loads((continuous_dir / "gen/generator.json").read_text())
    assert record["kind"] == "continuous_generator" and record["config"]["arch"] == "mae" and record["config"]["token_dim"] == 4
    assert json.loads((continuous_dir / "gen/tokenizer.json").read_text())["kind"] == "kl_tokenizer"


@pytest.mark.parametrize("head", [["--head-sampler", "dpm-solver", "--head-steps", "3"], ["--head-sampler", "ddpm", "--head-steps", "4", "--head-temperature", "0.9"]])
def test_sample_and_replay(continuous_dir, tmp_path, capsys, head):
    out = tmp_path / "s"
    args = ["sample", "--model", str(continuous_dir / "gen"), "--num", "6", "--batch-size", "4", "--sampler", "ancestral", "--steps", "4", "--cfg", "2", "--cfg-interval", "0.0", "0.5", "--out", str(out), *head]
    assert main(args) == 0
    said = capsys.readouterr().out
    meta = json.loads((out / "samples.json").read_text())
    steps = int(head[3])
    # CFG is active where 0 < s <= 0.5: s = 0.5, 0.25 (and not 0.75, 0): 4 + 2 passes per image
    assert meta["nfe"] == 6 and meta["settings"]["sampler"]["head"]["steps"] == steps
    assert "diffusion head passes" in said
    arrays = np.load(out / "samples.npz")
    assert arrays["images"].shape == (6, 1, 32, 32) and arrays["tokens"].shape == (6, 16, 4)
    assert main(["sample", "--spec", str(out / "samples.json"), "--out", str(tmp_path / "again")]) == 0
    assert np.array_equal(np.load(tmp_path / "again/samples.npz")["images"], arrays["images"])


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--sampler", "confidence"], "ranks token log-probabilities, which a continuous-token generator does not give"),
        (["--sampler", "ancestral", "--top-k", "5"], "top_k of the token draw applies to discrete tokens"),
        (["--sampler", "ancestral", "--guidance", "self"], "self-guidance works on a discrete-token generator"),
        (["--sampler", "ancestral", "--head-sampler", "dpm-solver", "--head-temperature", "0.5"], "no effect with the deterministic dpm-solver"),
        (["--sampler", "ancestral", "--head-sampler", "euler"], "unknown head sampler"),
    ],
)
def test_continuous_refusals_are_one_line(continuous_dir, tmp_path, capsys, extra, match):
    assert main(["sample", "--model", str(continuous_dir / "gen"), "--num", "2", "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_continuous_options_on_a_vq_tokenizer_and_head_options_on_a_discrete_model(model_dir, tmp_path, capsys):
    tok = model_dir.parent / "tok"
    assert main(["train", "--tokenizer", str(tok), "--out", str(tmp_path / "g"), "--arch", "mae", "--steps", "1"]) == 2
    assert "--arch: continuous-token options" in capsys.readouterr().err
    assert main(["sample", "--model", str(model_dir), "--num", "2", "--out", str(tmp_path / "s"), "--head-steps", "4"]) == 2
    assert "head sampler settings apply to a continuous-token generator" in capsys.readouterr().err
    assert not (tmp_path / "g").exists() and not (tmp_path / "s").exists()


def test_demo_runs_the_emigm_row_on_an_exported_continuous_model(model_dir, continuous_dir, tmp_path, capsys):
    """The shipped layout: the discrete reference at the root, the continuous one in emigm/."""
    clf, out = tmp_path / "clf", tmp_path / "ref"
    assert main(["train-classifier", "--data", "embedded", "--out", str(clf), "--steps", "1", "--batch-size", "16", "--width", "8"]) == 0
    assert main(["export", "--model", str(model_dir), "--out", str(out), "--classifier", str(clf), "--ref-data", "embedded"]) == 0
    assert main(["export", "--model", str(continuous_dir / "gen"), "--out", str(out / "emigm")]) == 0
    capsys.readouterr()
    assert main(["demo", "--model", str(out), "--num", "10", "--samplers", "confidence,emigm-paper", "--out", str(tmp_path / "demo")]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| emigm-paper |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[4]) == 16 + 3 and cells[5] != "-"  # NFE: 16 steps + CFG at s = 0.25, 0.1875, 0.125, inside (0.1, 0.3]
    assert (tmp_path / "demo" / "emigm-paper" / "grid.png").is_file()
