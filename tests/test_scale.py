"""The ImageNet-256 recipes and the trainer's gradient accumulation, at tiny size on CPU.

Each recipe is loaded through the CLI's recipe loader (which refuses unknown keys) and runs
2 training steps on a 16x16 grid, the recipes' grid, of a tiny tokenizer's cache, with the
model shrunk on the command line. Accumulation is checked against one full batch.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from torch.utils.data import TensorDataset

from maskgen.cli import build_parser, load_recipe, main
from maskgen.data.encode import encode_dataset
from maskgen.training.checkpoints import StepCheckpoints
from maskgen.tokenizers import KLConfig, KLTokenizer, VQConfig, VQTokenizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MASKGIT, EMIGM = CONFIGS / "maskgit-imagenet256.yaml", CONFIGS / "emigm-b-imagenet256.yaml"
TINY = ["--width", "32", "--depth", "1", "--heads", "2", "--steps", "2", "--batch-size", "8", "--warmup", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """An untrained VQ tokenizer with 1024 codes and a KL one with 16-dim latents, both taking
    32x32 images to the recipes' 16x16 grid, and their caches of 32 random images."""
    root = tmp_path_factory.mktemp("scale")
    g = torch.Generator().manual_seed(0)
    images = TensorDataset(torch.randint(0, 256, (32, 1, 32, 32), dtype=torch.uint8, generator=g), torch.arange(32) % 4)
    images.class_names = ["a", "b", "c", "d"]
    shape = dict(image_size=32, channels=1, downsample=2, width=8)
    tokenizers = {"vq": VQTokenizer(VQConfig(codebook_size=1024, code_dim=8, **shape)), "kl": KLTokenizer(KLConfig(token_dim=16, **shape))}
    for kind, tokenizer in tokenizers.items():
        tokenizer.save(root / kind)
        encode_dataset(type(tokenizer).load(root / kind), images, root / f"{kind}-cache")
    return root


def recipe(path: Path) -> dict:
    _, verbs = build_parser()
    return load_recipe(str(path), verbs["train"])


def test_recipes_are_the_published_sizes_and_start_with_their_command():
    maskgit, emigm = recipe(MASKGIT), recipe(EMIGM)
    assert (maskgit["width"], maskgit["depth"], maskgit["heads"], maskgit["label_smoothing"], maskgit["batch_size"]) == (768, 24, 16, 0.1, 256)
    assert maskgit["schedule"] == "cosine" and maskgit["masking"] == "count" and maskgit["accumulate"] > 1
    assert (emigm["arch"], emigm["width"], emigm["depth"], emigm["heads"], emigm["buffer_size"]) == ("mae", 768, 12, 12, 64)
    assert (emigm["head_width"], emigm["head_depth"], emigm["head_draws"], emigm["batch_size"]) == (1024, 6, 4, 256)
    # its objective is eMIGM's code's: the emigm training preset, under the recipe
    from maskgen.cli import parse_args

    objective = parse_args(["train", "--config", str(EMIGM), "--tokenizer", "t", "--out", "o"])
    assert emigm["preset"] == "emigm" and objective.t_min == 0.2 and objective.schedule == "emigm-exp"
    assert objective.masking == "batch-bernoulli" and objective.batch_time and objective.weighting == "batch-masked-mean" and objective.uncond == "mask"
    assert emigm["norm_eps"] == 1e-6  # MAR's and eMIGM's LayerNorm eps
    for path in (MASKGIT, EMIGM):
        first = path.read_text().splitlines()[0]
        assert first.startswith(f"# torchrun --nproc_per_node 8 -m maskgen.cli train --config configs/{path.name} "), first
        assert path.name in (CONFIGS / "README.md").read_text()


def test_maskgit_recipe_trains_two_steps_on_a_16x16_grid(caches, tmp_path):
    out = tmp_path / "maskgit"
    args = ["train", "--config", str(MASKGIT), "--tokenizer", str(caches / "vq"), "--data", f"tokens:{caches / 'vq-cache'}", "--out", str(out), *TINY]
    assert main(args) == 0
    weights = load_file(str(out / "generator.safetensors"))
    assert any(v.shape[0] == 1024 for v in weights.values())  # logits over the 1024 codes


def test_emigm_recipe_trains_two_steps_on_a_16x16_grid(caches, tmp_path):
    out = tmp_path / "emigm"
    tiny_head = ["--decoder-depth", "1", "--buffer-size", "4", "--head-width", "16", "--head-depth", "1", "--head-draws", "2"]
    args = ["train", "--config", str(EMIGM), "--tokenizer", str(caches / "kl"), "--data", f"tokens:{caches / 'kl-cache'}", "--out", str(out), *TINY, *tiny_head]
    assert main(args) == 0
    assert (out / "generator.safetensors").is_file()
    assert json.loads((out / "generator.json").read_text())["config"]["norm_eps"] == 1e-6


def test_accumulated_micro_batches_give_the_full_batch_weights(caches, tmp_path):
    """2 steps of 2 micro-batches of 4 land on the weights of 2 steps of one batch of 8."""
    common = ["train", "--config", str(MASKGIT), "--tokenizer", str(caches / "vq"), "--data", f"tokens:{caches / 'vq-cache'}", *TINY, "--ema", "0", "--lr", "1e-2"]
    weights = {}
    for k in (1, 2):
        assert main([*common, "--accumulate", str(k), "--out", str(tmp_path / f"acc{k}")]) == 0
        weights[k] = load_file(str(tmp_path / f"acc{k}" / "generator.safetensors"))
    assert main([*common, "--steps", "1", "--out", str(tmp_path / "one")]) == 0
    one_step = load_file(str(tmp_path / "one" / "generator.safetensors"))
    assert any(not torch.allclose(one_step[n], weights[1][n], rtol=1e-4, atol=1e-5) for n in one_step)  # the 2nd step moved them
    assert weights[1].keys() == weights[2].keys()
    for name in weights[1]:
        torch.testing.assert_close(weights[2][name], weights[1][name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("extra, match", [(["--accumulate", "0"], "accumulate must be an integer >= 1"), (["--accumulate", "3"], "does not split over 1 processes x 3")])
def test_bad_accumulation_is_one_line(caches, tmp_path, capsys, extra, match):
    args = ["train", "--config", str(MASKGIT), "--tokenizer", str(caches / "vq"), "--data", f"tokens:{caches / 'vq-cache'}", "--out", str(tmp_path / "x"), *TINY, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(sys.platform != "linux", reason="gloo test on linux")
def test_two_processes_accumulating_match_one_process(tmp_path):
    """Under torchrun, 2 processes x 2 micro-batches (DDP no_sync on the first) = 1 process, 1 batch."""
    here = Path(__file__).parent
    # this checkout's package first, whichever one the interpreter has installed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(here), str(here.parent / "src")])}
    worker = str(here / "train_worker.py")
    subprocess.run([sys.executable, worker, str(tmp_path / "one"), "3"], check=True, env=env, timeout=300)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", worker, str(tmp_path / "two"), "3", "2"],
        env=env, timeout=300, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    a, b = (load_file(str(StepCheckpoints(tmp_path / d).latest() / "train_state.safetensors")) for d in ("one", "two"))
    for key in a:
        if key.startswith("model."):
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
