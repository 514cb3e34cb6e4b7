import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskgen.checkpoint import load_tensors
from maskgen.errors import MaskgenError
from maskgen.models.transformer import MaskedTransformer
from maskgen.training.checkpoints import StepCheckpoints
from maskgen.training.context import StepContext
from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective, mask_positions
from maskgen.training.trainer import learning_rate, TrainConfig
from train_worker import tiny_setup

HERE = Path(__file__).parent


def final_state(out):
    return load_tensors(StepCheckpoints(out).latest() / "train_state.safetensors")


def ctx(b, step=0):
    return StepContext(step=step, rng=torch.Generator().manual_seed(step), rows=slice(0, b), global_batch=b)


def test_count_masking_is_exact():
    gamma = torch.tensor([0.0, 0.1, 0.5, 0.99, 1.0], dtype=torch.float64)
    m = mask_positions(gamma, torch.rand(5, 64), "count")
    assert m.sum(1).tolist() == [1, 7, 32, 64, 64]  # ceil(64 gamma), at least one


def test_bernoulli_masking_rate():
    gamma = torch.full((200,), 0.3, dtype=torch.float64)
    m = mask_positions(gamma, torch.rand(200, 256), "bernoulli")
    assert m.float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert len(set(m.sum(1).tolist())) > 1  # per-image counts vary


class Recorder(torch.nn.Module):
    """Returns fixed logits and records the inputs the objective fed it."""

    def __init__(self, k):
        super().__init__()
        self.logits = None
        self.k = k

    def forward(self, tokens, labels, t=None):
        self.inputs, self.labels = tokens, labels
        self.logits = torch.zeros(*tokens.shape, self.k, requires_grad=True)
        return self.logits


@pytest.mark.parametrize("weighting", ["one", "elbo"])
def test_loss_only_on_masked_positions(weighting):
    k = 16
    rec = Recorder(k)
    obj = MaskedTokenObjective(MaskedObjectiveConfig(weighting=weighting, t_min=0.2), mask_id=k, null_class=3)
    tokens = torch.randint(0, k, (8, 32))
    loss, _ = obj(rec, (tokens, torch.zeros(8, dtype=torch.long)), ctx(8))
    loss.backward()
    masked = rec.inputs == k
    grad_norm = rec.logits.grad.abs().sum(-1)
    assert (grad_norm[~masked] == 0).all() and (grad_norm[masked] > 0).all()
    assert torch.equal(rec.inputs[~masked], tokens[~masked])


def test_uniform_logits_give_log_k_and_elbo_weight():
    k = 16
    obj = MaskedTokenObjective(MaskedObjectiveConfig(weighting="per-image"), mask_id=k, null_class=3)
    loss, _ = obj(Recorder(k), (torch.randint(0, k, (4, 32)), torch.zeros(4, dtype=torch.long)), ctx(4))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(16.0)).item(), rel=1e-5)
    # w = 1 sums over the masked tokens / N: uniform logits give log K times the masked fraction
    obj = MaskedTokenObjective(MaskedObjectiveConfig(weighting="one", masking="bernoulli", schedule="linear", t_min=0.999999), mask_id=k, null_class=3)
    loss, _ = obj(Recorder(k), (torch.randint(0, k, (4, 32)), torch.zeros(4, dtype=torch.long)), ctx(4))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(16.0)).item(), rel=1e-4)
    # ELBO weighting, linear schedule: w = 1/t and E[masked fraction] = t, so E[loss] = log K
    obj = MaskedTokenObjective(MaskedObjectiveConfig(weighting="elbo", schedule="linear", masking="bernoulli"), mask_id=k, null_class=3)
    loss, _ = obj(Recorder(k), (torch.randint(0, k, (256, 64)), torch.zeros(256, dtype=torch.long)), ctx(256))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(16.0)).item(), rel=0.05)


def test_condition_dropout_and_time_truncation():
    k = 16
    rec = Recorder(k)
    obj = MaskedTokenObjective(MaskedObjectiveConfig(cond_drop=0.5, t_min=0.6, schedule="linear", masking="count"), mask_id=k, null_class=3)
    obj(rec, (torch.randint(0, k, (400, 20)), torch.zeros(400, dtype=torch.long)), ctx(400))
    assert (rec.labels == 3).float().mean().item() == pytest.approx(0.5, abs=0.08)
    assert ((rec.inputs == k).sum(1) >= 12).all()  # gamma(t >= 0.6) * 20


def test_learning_rate_schedule():
    c = TrainConfig(steps=100, lr=1.0, min_lr=0.1, warmup=10)
    assert learning_rate(0, c) == pytest.approx(0.1)
    assert learning_rate(9, c) == pytest.approx(1.0)
    assert learning_rate(100, c) == pytest.approx(0.1)


def test_training_reduces_loss(tmp_path):
    t = tiny_setup(tmp_path, 60)
    hist = t.fit(progress=False)
    assert sum(h["loss"] for h in hist[-10:]) / 10 < sum(h["loss"] for h in hist[:10]) / 10 - 0.2


def test_resume_equals_uninterrupted(tmp_path):
    full = tiny_setup(tmp_path / "full", 12)
    full.fit(progress=False)
    killed = tiny_setup(tmp_path / "half", 12)
    killed.fit(progress=False, until=6)  # as if the run were killed after step 6
    assert killed.step == 6
    resumed = tiny_setup(tmp_path / "half", 12)
    resumed.fit(resume=True, progress=False)
    assert resumed.step == 12
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "half")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ga = MaskedTransformer.load(tmp_path / "full")
    gb = MaskedTransformer.load(tmp_path / "half")
    assert all(torch.equal(x, y) for x, y in zip(ga.state_dict().values(), gb.state_dict().values()))


def test_checkpoints_are_atomic_and_complete(tmp_path):
    tiny_setup(tmp_path, 4, save_every=2).fit(progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoints", "generator.json", "generator.safetensors"]
    (step,) = (tmp_path / "checkpoints").iterdir()
    assert step.name == "step-00000004"
    assert sorted(p.name for p in step.iterdir()) == ["generator.json", "generator.safetensors", "manifest.json", "train_state.json", "train_state.safetensors"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    t = tiny_setup(tmp_path, 8, save_every=3)
    objective = t.objective

    def poisoned(model, batch, c):
        loss, m = objective(model, batch, c)
        return (loss * float("nan") if c.step == 5 else loss), m

    t.objective = poisoned
    with pytest.raises(MaskgenError, match=r"loss is nan at step 5.*step 3"):
        t.fit(progress=False)
    good = tiny_setup(tmp_path, 8)
    assert good.resume() and good.step == 3


@pytest.mark.skipif(sys.platform != "linux", reason="gloo test on linux")
def test_two_process_ddp_matches_one_process(tmp_path):
    # this checkout's package first, whichever one the interpreter has installed
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "src")])}
    worker = str(HERE / "train_worker.py")
    subprocess.run([sys.executable, worker, str(tmp_path / "one"), "6"], check=True, env=env, timeout=300)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", worker, str(tmp_path / "two"), "6"],
        env=env, timeout=300, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    a, b = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    for key in a:
        if key.startswith("model."):
            assert torch.allclose(a[key], b[key], atol=1e-5), key
