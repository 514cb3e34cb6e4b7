"""ref-stats and eval through the CLI with maskgen's own classifier (fast, no Inception)."""

import json

import numpy as np
import pytest

from maskgen.cli import main

CLF = ["--steps", "150", "--batch-size", "64", "--width", "16", "--feature-dim", "16", "--log-every", "5"]


@pytest.fixture(scope="module")
def clf_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "clf"
    assert main(["train-classifier", "--data", "embedded", "--out", str(out), *CLF]) == 0
    assert json.loads((out / "metrics.json").read_text())["accuracy"] > 0.3
    return out


@pytest.fixture(scope="module")
def ref(clf_dir):
    path = clf_dir.parent / "ref.npz"
    assert main(["ref-stats", "--data", "embedded", "--num", "2000", "--network", f"classifier:{clf_dir}", "--out", str(path)]) == 0
    return path


def test_eval_samples_file(model_dir, ref, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", "--model", str(model_dir), "--num", "40", "--out", str(out), "--steps", "2"]) == 0
    assert main(["eval", "--samples", str(out / "samples.npz"), "--ref", str(ref)]) == 0
    result = json.loads((out / "eval.json").read_text())
    m = result["metrics"]
    assert m["network"] == "maskgen-classifier" and m["count"] == 40 and len(m["network_sha256"]) == 64
    for key in ("fd_clf", "cs", "class_accuracy", "precision_clf", "recall_clf", "kid_clf"):
        assert np.isfinite(m[key]), key
    assert "fid" not in m and "is" not in m  # never mistaken for Inception numbers
    assert result["nfe"] == 2 and result["sampler"]["steps"] == 2
    assert m["fd_clf"] > 0 and 1.0 <= m["cs"] <= 10.0


def test_too_few_samples_for_kid_and_fd_are_flagged(ref, tmp_path, capsys):
    from maskgen.metrics.evaluate import dataset_images

    images, labels = dataset_images("embedded", num=1000)
    small, enough = tmp_path / "small.npz", tmp_path / "enough.npz"
    np.savez(small, images=images[:100], labels=labels[:100])
    np.savez(enough, images=images, labels=labels)
    assert main(["eval", "--samples", str(small), "--ref", str(ref), "--kid-subsets", "5"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warning = [line for line in err if line.startswith("maskgen: warning:")]
    assert len(warning) == 1 and "100 samples are too few for fd_clf/kid_clf" in warning[0] and "can be negative" in warning[0]
    m = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert m["note"] == warning[0].removeprefix("maskgen: warning: ")
    assert main(["eval", "--samples", str(enough), "--ref", str(ref), "--kid-subsets", "5", "--out", str(tmp_path / "e.json")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert "note" not in json.loads((tmp_path / "e.json").read_text())["metrics"]


def test_real_images_score_better_than_noise(ref, tmp_path):
    from maskgen.metrics.evaluate import dataset_images

    images, labels = dataset_images("embedded", num=600)
    real = tmp_path / "real.npz"
    np.savez(real, images=images[-300:], labels=labels[-300:])
    noise = tmp_path / "noise.npz"
    np.savez(noise, images=np.random.default_rng(0).integers(0, 256, images[:300].shape, dtype=np.uint8), labels=labels[:300])
    assert main(["eval", "--samples", str(real), "--ref", str(ref), "--out", str(tmp_path / "r.json")]) == 0
    assert main(["eval", "--samples", str(noise), "--ref", str(ref), "--out", str(tmp_path / "n.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())["metrics"]
    n = json.loads((tmp_path / "n.json").read_text())["metrics"]
    assert r["fd_clf"] < n["fd_clf"] and r["class_accuracy"] > n["class_accuracy"]


def test_eval_from_model(model_dir, ref, tmp_path):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", str(model_dir), "--num", "20", "--steps", "2", "--cfg", "1", "--ref", str(ref), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["nfe"] == 4 and result["metrics"]["count"] == 20


def test_eval_bad_input(ref, tmp_path, capsys):
    assert main(["eval", "--samples", str(tmp_path / "none.npz"), "--ref", str(ref)]) == 2
    assert "samples file does not exist" in capsys.readouterr().err
    assert main(["ref-stats", "--network", "vgg", "--out", str(tmp_path / "x.npz")]) == 2
    assert "unknown feature network" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["eval", "--samples", str(tmp_path / "none.npz"), "--ref", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
