"""Crash-consistent training checkpoints: one step directory per save, committed by a rename.

A save writes every file of the checkpoint (the trainer's state and the model's own files)
into ``OUT/checkpoints/.step-NNNNNNNN.tmp/``, then ``manifest.json`` with each file's sha256,
flushes them to disk and renames the folder to ``OUT/checkpoints/step-NNNNNNNN``. A folder
rename is atomic, so a checkpoint is visible whole or not at all, wherever the writer dies.
The model files are then published to ``OUT/`` (each hard-linked to a temporary name and
moved over the old one), and older step folders are removed.

Resuming reads the newest step folder whose manifest matches its files. A run killed
between two published files leaves a model whose JSON disagrees with its weights (the
loader refuses it); resuming republishes it from the checkpoint. Folders written before
step folders existed (``OUT/train_state.*``) still resume.

What a resumed run must match is decided here once, for every trainer
(``refuse_changed_run``): the newest checkpoint's record against the record the run would
write now.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import fault_point, file_sha256, load_json, save_json
from ..errors import MaskgenError

STATE = "train_state"
MANIFEST = "manifest.json"
FOLDER = "checkpoints"


# train settings that do not change what a run trains: the same run, reached another way
RESUME_IGNORES = {"save_every", "log_every", "num_workers", "device", "bf16", "accumulate", "compile"}
# record entries that name or count, not decide: paths (their content's identity, a data
# fingerprint or a sha256, is recorded beside them and compared), progress, parameter counts
NOT_COMPARED = {"step", "history", "parameters", "data", "generator", "teacher"}
LABELS = {"data_fingerprint": "data fingerprint", "generator_sha256": "generator sha256", "teacher_sha256": "teacher sha256"}


def plain(value: Any) -> str:
    """``value`` as canonical JSON: tuples and lists, ints and equal floats compare equal."""
    return json.dumps(value, sort_keys=True, default=str).replace("(", "[").replace(")", "]")


def _shown(value: Any) -> str:
    text = str(value)
    return f"{text[:12]}..." if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in text) else text


def resume_changes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What ``now`` (the record a run would write) changes in ``before`` (its newest
    checkpoint's): one ``key old -> new`` per difference, the data first. Compared: every entry
    of both but ``NOT_COMPARED``, key by key inside a mapping (the train settings but
    ``RESUME_IGNORES``, the model's, tokenizer's and objective's configs); an entry or a key
    one side lacks (a record written before it existed) is not compared, so older runs resume."""
    changed: list[str] = []
    for key in sorted(now, key=lambda k: (k != "data_fingerprint", k)):
        if key in NOT_COMPARED or key not in before:
            continue
        old, new = before[key], now[key]
        if isinstance(old, dict) and isinstance(new, dict):
            for sub, value in new.items():
                if sub in old and not (key == "train" and sub in RESUME_IGNORES) and plain(old[sub]) != plain(value):
                    changed.append(f"{sub} {old[sub]} -> {value}")
        elif plain(old) != plain(new):
            line = f"{LABELS.get(key, key)} {_shown(old)} -> {_shown(new)}"
            if key == "data_fingerprint":
                line += f" (the run trained on {before.get('data', '?')}; the data now is {now.get('data', '?')})"
            changed.append(line)
    return list(dict.fromkeys(changed))  # a config recorded twice (model and tokenizer) is named once


def refuse_changed_run(out: str | Path, changed: list[str]) -> None:
    """The one message for a resume that would not continue the run in ``out``."""
    if changed:
        raise MaskgenError(f"--resume would change the run in {out}: {'; '.join(changed)}; resume with its settings, or start afresh with --overwrite")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete(step_dir: Path) -> bool:
    """Whether ``step_dir`` holds every file its manifest names, with the recorded hashes."""
    try:
        manifest = load_json(step_dir / MANIFEST)
    except Exception:
        return False
    files = manifest.get("files", {})
    return all((step_dir / name).is_file() and file_sha256(step_dir / name) == sha for name, sha in files.items())


class StepCheckpoints:
    """The step folders of one training run in ``out``."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.root = self.out / FOLDER

    def steps(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if p.is_dir())

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or ``out`` itself for a run saved before
        step folders existed, or None."""
        for step_dir in reversed(self.steps()):
            if _complete(step_dir):
                return step_dir
        legacy = self.out / f"{STATE}.safetensors"
        return self.out if legacy.is_file() and (self.out / f"{STATE}.json").is_file() else None

    def record(self) -> dict[str, Any] | None:
        """The latest complete checkpoint's ``train_state.json`` (step, settings), or None."""
        latest = self.latest()
        return load_json(latest / f"{STATE}.json") if latest is not None else None

    def commit(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write a checkpoint with ``write(folder)`` and make it visible in one rename."""
        final = self.root / f"step-{step:08d}"
        if final.is_dir() and _complete(final):
            return final  # saved again at a step already on disk (resumed, then stopped at once)
        tmp = self.root / f".step-{step:08d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        fault_point("mkdir", tmp)
        tmp.mkdir(parents=True)
        write(tmp)
        names = sorted(p.name for p in tmp.iterdir() if not p.name.startswith("."))
        save_json(tmp / MANIFEST, {"step": step, "files": {n: file_sha256(tmp / n) for n in names}})
        for name in (*names, MANIFEST):
            _fsync(tmp / name)
        _fsync(tmp)
        if final.exists():  # an incomplete folder of the same step: never readable, so safe to drop
            fault_point("remove", final)
            shutil.rmtree(final)
        fault_point("rename", final)
        os.rename(tmp, final)
        _fsync(self.root)
        return final

    def publish(self, step_dir: Path) -> None:
        """Put the model files of ``step_dir`` into ``out`` where users load them from: weights
        before their JSON, which records the weights' hash, so a half-done publish is detected."""
        if step_dir == self.out:
            return
        names = [n for n in load_json(step_dir / MANIFEST)["files"] if not n.startswith(STATE)]
        names.sort(key=lambda n: (n.endswith(".json"), n))
        for name in names:
            for stale in self.out.glob(f".{name}.*.tmp"):
                stale.unlink()
            target, tmp = self.out / name, self.out / f".{name}.publish.tmp"
            if target.exists() and os.path.samefile(step_dir / name, target):
                continue  # already published (and rename() between two links of one file is a no-op)
            fault_point("link", target)
            try:
                os.link(step_dir / name, tmp)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(step_dir / name, tmp)
            fault_point("replace", target)
            os.replace(tmp, target)

    def prune(self, keep: Path) -> None:
        """Remove every step folder but ``keep``, and any half-written one."""
        for old in [*self.steps(), *self.root.glob(".step-*.tmp")]:
            if old != keep:
                fault_point("remove", old)
                shutil.rmtree(old)

    def clear(self) -> None:
        """Drop the checkpoints of a previous run in ``out`` (a fresh, non-resumed start): a
        later resume must never pick up the replaced run's steps."""
        if self.root.exists():
            fault_point("remove", self.root)
            shutil.rmtree(self.root)
        for name in (f"{STATE}.safetensors", f"{STATE}.json"):
            (self.out / name).unlink(missing_ok=True)
