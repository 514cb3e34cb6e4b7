"""``maskgen import`` end to end on tiny checkpoints in the published layouts, then the verbs
users run on an imported model: every sampler and guidance, self-guidance fine-tuning, the
Token-Critic, refinement and eval (discrete, valeoai v1); sampling with the head (MAR)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgen.cli import main
from maskgen.tokenizers.taming_vq import TamingVQConfig, TamingVQTokenizer

FIXTURES = Path(__file__).parent / "fixtures"
V1, MAR, MAR_VAE = FIXTURES / "valeoai_v1_tiny.pth", FIXTURES / "mar_tiny.pth", FIXTURES / "mar_vae_tiny.ckpt"


@pytest.fixture(scope="module")
def v1_model(tmp_path_factory):
    """The tiny v1 generator (4x4 tokens, 16 codes) with a VQGAN of the same grid and codebook,
    written as taming's Lightning checkpoint (``state_dict``, original key names)."""
    root = tmp_path_factory.mktemp("v1")
    torch.manual_seed(0)
    vq = TamingVQTokenizer(TamingVQConfig(image_size=16, channels=3, ch=32, ch_mult=(1, 1, 1), num_res_blocks=1,
                                          encoder_attn_resolutions=(), decoder_attn_resolutions=(), z_channels=8, embed_dim=8, codebook_size=16))
    torch.save({"state_dict": vq.state_dict(), "global_step": 0}, root / "last.ckpt")
    assert main(["import", "--format", "valeoai-v1", "--generator", str(V1), "--tokenizer", str(root / "last.ckpt"),
                 "--out", str(root / "model"), "--image-size", "16", "--heads", "2"]) == 0
    return root / "model"


def test_import_writes_a_model_folder_that_records_its_source(v1_model):
    record = json.loads((v1_model / "generator.json").read_text())
    assert record["kind"] == "generator" and record["imported_from"]["format"] == "valeoai-v1"
    assert json.loads((v1_model / "tokenizer.json").read_text())["kind"] == "taming_vq_tokenizer"


@pytest.mark.parametrize(
    "options",
    [
        ["--sampler", "confidence", "--schedule", "arccos", "--cfg", "2", "--cfg-ramp", "linear"],
        ["--sampler", "ancestral", "--guidance", "blur"],
        ["--sampler", "flow", "--argmax-last", "--guidance", "sag"],
    ],
)
def test_samplers_run_on_an_imported_model(v1_model, tmp_path, options):
    assert main(["sample", "--model", str(v1_model), "--num", "4", "--steps", "3", "--out", str(tmp_path / "s"), *options]) == 0
    assert np.load(tmp_path / "s/samples.npz")["images"].shape == (4, 3, 16, 16)


def test_fine_tuning_verbs_run_on_an_imported_model(v1_model, tmp_path):
    assert main(["sample", "--model", str(v1_model), "--num", "20", "--steps", "2", "--out", str(tmp_path / "base")]) == 0
    data = ["--data", f"folder:{_image_folder(tmp_path)}"]
    assert main(["finetune-sg", "--model", str(v1_model), "--out", str(tmp_path / "sg"), *data, "--steps", "2", "--batch-size", "4"]) == 0
    assert main(["sample", "--model", str(v1_model), "--num", "4", "--steps", "3", "--guidance", "self", "--sg-module", str(tmp_path / "sg"), "--out", str(tmp_path / "sgs")]) == 0
    assert main(["train-critic", "--model", str(v1_model), "--out", str(tmp_path / "critic"), *data, "--steps", "2", "--batch-size", "4", "--heldout", "4"]) == 0
    assert main(["refine", "--model", str(v1_model), "--samples", str(tmp_path / "base/samples.npz"), "--critic", str(tmp_path / "critic"), "--out", str(tmp_path / "refined")]) == 0


def _image_folder(tmp_path: Path) -> Path:
    """A class-per-folder image set of the imported model's size (a stand-in for ImageNet)."""
    from PIL import Image

    root = tmp_path / "images"
    g = np.random.default_rng(0)
    for c in range(5):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(4):
            Image.fromarray(g.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def test_mar_import_then_sample_with_the_head(tmp_path, capsys):
    out = tmp_path / "mar"
    assert main(["import", "--format", "mar", "--generator", str(MAR), "--tokenizer", str(MAR_VAE), "--out", str(out), "--image-size", "8", "--heads", "2"]) == 0
    assert main(["sample", "--model", str(out), "--num", "3", "--sampler", "ancestral", "--steps", "4", "--cfg", "2", "--cfg-ramp", "revealed",
                 "--head-sampler", "ddpm", "--head-steps", "5", "--out", str(tmp_path / "s")]) == 0
    assert "diffusion head passes" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--format", "halton"], "unknown import format 'halton'"),
        (["--format", "mar", "--image-size", "16"], "does not match tokenizer"),
        (["--format", "mar", "--raw-weights", "--heads", "3"], "width"),
    ],
)
def test_import_refusals_are_one_line_and_write_nothing(tmp_path, capsys, argv, match):
    args = ["import", "--generator", str(MAR), "--tokenizer", str(MAR_VAE), "--out", str(tmp_path / "x"), "--heads", "2", "--image-size", "8"]
    assert main(args + argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_inpaint_runs_on_an_imported_model(v1_model, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:8, 4:12] = 255  # two of the 4x4 grid's 4x4-pixel patches
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "inpainted"
    assert main(["inpaint", "--model", str(v1_model), "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                 "--out", str(out), "--num", "2", "--steps", "2", "--class", "3"]) == 0
    given = np.asarray(Image.open(tmp_path / "in.png"))
    samples = sorted(out.glob("sample-*.png"))
    assert len(samples) == 2
    for png in samples:
        got = np.asarray(Image.open(png).convert("RGB"))
        assert (got[mask == 0] == given[mask == 0]).all()
