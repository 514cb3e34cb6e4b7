"""A training run killed at any file operation of a save resumes to the same result.

The fault hook (``checkpoint.set_fault_hook``) stops the writer before each file operation
in turn, the way ``kill -9`` would: no clean-up runs. Every kill point must then resume,
from whatever is on disk, to weights, EMA and optimiser state bit-identical to a run that
was never interrupted, with a loadable published model and no temporaries left behind.
"""

import pytest
import torch

from maskgen.checkpoint import load_tensors, set_fault_hook
from maskgen.errors import MaskgenError
from maskgen.models.transformer import MaskedTransformer
from maskgen.training.checkpoints import StepCheckpoints
from train_worker import tiny_setup

STEPS, SAVE_EVERY = 4, 2


class Killed(BaseException):
    """Not an ``Exception``: like SIGKILL, it skips every ``except Exception`` clean-up."""


def operations(out):
    seen = []
    set_fault_hook(lambda op, path: seen.append((op, path.name)))
    try:
        tiny_setup(out, STEPS, save_every=SAVE_EVERY).fit(progress=False)
    finally:
        set_fault_hook(None)
    return seen


def kill_at(k):
    count = iter(range(k + 1))

    def hook(op, path):
        if next(count) == k:
            raise Killed(f"{op} {path}")

    return hook


def state_of(out):
    return load_tensors(StepCheckpoints(out).latest() / "train_state.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    ops = operations(out)
    return out, ops


def test_a_save_touches_files_in_a_known_order(reference):
    _, ops = reference
    kinds = [op for op, _ in ops]
    # two saves; each: step folder, 4 atomic files + manifest, rename, then publish two files
    assert kinds.count("rename") == STEPS // SAVE_EVERY
    assert kinds.count("link") == 2 * (STEPS // SAVE_EVERY)
    assert len(ops) >= 20


def test_kill_at_every_file_operation_then_resume_is_bit_identical(reference, tmp_path):
    ref_out, ops = reference
    expected = state_of(ref_out)
    expected_model = MaskedTransformer.load(ref_out).state_dict()
    for k in range(len(ops)):
        out = tmp_path / f"kill{k}"
        set_fault_hook(kill_at(k))
        try:
            with pytest.raises(Killed):
                tiny_setup(out, STEPS, save_every=SAVE_EVERY).fit(progress=False)
        finally:
            set_fault_hook(None)
        resumed = tiny_setup(out, STEPS, save_every=SAVE_EVERY)
        resumed.fit(resume=True, progress=False)
        assert resumed.step == STEPS, k
        got = state_of(out)
        assert got.keys() == expected.keys(), k
        assert all(torch.equal(got[key], expected[key]) for key in expected), f"kill before operation {k} {ops[k]}"
        model = MaskedTransformer.load(out).state_dict()
        assert all(torch.equal(model[key], expected_model[key]) for key in expected_model), k
        leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
        assert leftovers == [], (k, leftovers)
        assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{STEPS:08d}"], k


def test_a_half_published_model_is_refused_then_repaired_by_resume(tmp_path):
    tiny_setup(tmp_path, STEPS, save_every=SAVE_EVERY).fit(progress=False)
    # as if killed between publishing the weights and their JSON: weights of another step
    (tmp_path / "generator.safetensors").unlink()
    (tmp_path / "generator.safetensors").write_bytes((tmp_path / "checkpoints" / f"step-{STEPS:08d}" / "train_state.safetensors").read_bytes())
    with pytest.raises(MaskgenError, match="inconsistent.*--resume"):
        MaskedTransformer.load(tmp_path)
    done = tiny_setup(tmp_path, STEPS, save_every=SAVE_EVERY)
    done.fit(resume=True, progress=False)
    MaskedTransformer.load(tmp_path)


def test_a_fresh_start_discards_the_previous_runs_checkpoints(tmp_path):
    tiny_setup(tmp_path, 6, save_every=6).fit(progress=False)
    tiny_setup(tmp_path, 4, save_every=2).fit(progress=False, until=2)
    assert StepCheckpoints(tmp_path).record()["step"] == 2  # never the replaced run's step 6
