"""Checkpoints as safetensors plus JSON: atomic writes, strict loads, no pickle.

A checkpoint named ``NAME`` in folder ``DIR`` is two files, ``DIR/NAME.safetensors``
(tensors) and ``DIR/NAME.json`` (config and metadata).  Both are written to a temporary
file in the same folder and moved into place with ``os.replace``, so a run killed
mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import MaskgenError


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    _atomic_write(Path(path), write)


def load_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"missing file: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MaskgenError(f"corrupt JSON file {path}: {e}") from None


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> None:
    """Write tensors to a safetensors file, atomically (contiguous CPU copies)."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(flat, tmp, metadata=dict(metadata or {})))


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"missing checkpoint file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MaskgenError(f"corrupt or truncated checkpoint {path}: {e}") from None


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise a one-line error listing missing, unexpected and mis-shaped keys."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k} {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
    if shapes:
        problems.append("shape mismatch: " + ", ".join(shapes[:8]) + (" ..." if len(shapes) > 8 else ""))
    if problems:
        raise MaskgenError(f"checkpoint does not match {what}: " + "; ".join(problems))


def save_module(folder: str | Path, name: str, module: torch.nn.Module, config: Mapping[str, Any], **extra: Any) -> Path:
    """Save ``module``'s state dict and ``config`` as ``folder/name.{safetensors,json}``.

    The tensors go first; the JSON, which records the tensors' hash, goes last, so a
    reader that finds a JSON whose hash does not match knows the pair is inconsistent.
    """
    folder = Path(folder)
    weights = folder / f"{name}.safetensors"
    save_tensors(weights, module.state_dict())
    save_json(folder / f"{name}.json", {"config": dict(config), "sha256": file_sha256(weights), **extra})
    return weights


def load_module_state(folder: str | Path, name: str, module: torch.nn.Module) -> dict[str, Any]:
    """Load ``folder/name.safetensors`` into ``module`` strictly; return the JSON record."""
    folder = Path(folder)
    record = load_json(folder / f"{name}.json")
    state = load_tensors(folder / f"{name}.safetensors")
    check_state_dict(module.state_dict(), state, f"{type(module).__name__} in {folder}/{name}")
    module.load_state_dict(state, strict=True)
    return record


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(folder: str | Path, name: str, build: Callable[[dict[str, Any]], torch.nn.Module]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build a module from ``folder/name.json``'s config, load its tensors strictly, check
    the file against the recorded hash; return it (eval mode, ``.sha256`` set) and the record."""
    folder = Path(folder)
    record = load_json(folder / f"{name}.json")
    if not isinstance(record.get("config"), dict):
        raise MaskgenError(f"checkpoint {folder}/{name}.json has no config")
    try:
        module = build(record["config"])
    except TypeError as e:
        raise MaskgenError(f"malformed config in {folder}/{name}.json: {e}") from None
    weights = folder / f"{name}.safetensors"
    state = load_tensors(weights)
    check_state_dict(module.state_dict(), state, f"{type(module).__name__} in {folder}/{name}")
    module.load_state_dict(state, strict=True)
    sha = file_sha256(weights)
    if record.get("sha256") not in (None, sha):
        raise MaskgenError(f"checkpoint {weights} is inconsistent: its sha256 does not match {name}.json")
    module.sha256 = sha
    return module.eval(), record
