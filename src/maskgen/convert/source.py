"""Reading a published ``torch.save`` checkpoint without trusting it, and accounting for its keys.

Files are read by ``torch_file.read_torch_file`` (``weights_only=True``: tensors, containers
and numbers, plus the classes a format is known to pickle, such as MAR's
``argparse.Namespace``; anything else refused in one line). ``SourceKeys`` hands out a state dict's
tensors one key at a time and, at the end, names every key that was missing, left unused
or of the wrong shape in one ``MaskgenError``: a converter never drops a key silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

from ..errors import MaskgenError
from .torch_file import state_dict_at

PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def strip_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Keys without the wrappers' prefixes (``module.``, ``_orig_mod.``, in any order)."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in PREFIXES:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        out[key] = value
    return out


def tensor_dict(container: Mapping[str, Any], key: str, path: str | Path, what: str) -> dict[str, Tensor]:
    """``container[key]`` as a prefix-free state dict, refused in one line if absent or not one."""
    return strip_prefixes(state_dict_at(container, key, f"{path} ({what} checkpoint)"))


def _few(items: list[str]) -> str:
    return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")


class SourceKeys:
    """A published state dict read key by key; ``finish`` reports what did not fit."""

    def __init__(self, state: Mapping[str, Tensor], what: str):
        self.state, self.what = dict(state), what
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.shapes: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.state

    def shape(self, key: str) -> tuple[int, ...] | None:
        return tuple(self.state[key].shape) if key in self.state else None

    def count(self, prefix: str) -> int:
        """How many consecutive ``prefix{i}.`` groups exist (blocks of a layer list)."""
        n = 0
        while any(k.startswith(f"{prefix}{n}.") for k in self.state):
            n += 1
        return n

    def take(self, key: str, shape: tuple[int, ...]) -> Tensor | None:
        """The tensor under ``key`` if it has ``shape``; otherwise None, noted for ``finish``."""
        self.used.add(key)
        if key not in self.state:
            self.missing.append(key)
            return None
        value = self.state[key]
        if tuple(value.shape) != tuple(shape):
            self.shapes.append(f"{key} {tuple(value.shape)} != {tuple(shape)}")
            return None
        return value

    def require(self, key: str) -> Tensor:
        """A tensor the configuration is read from: refused at once if absent."""
        if key not in self.state:
            raise MaskgenError(f"checkpoint is not a {self.what}: it has no {key}")
        return self.state[key]

    def finish(self) -> None:
        """Raise one line naming every missing, unused and mis-shaped key, if any."""
        unused = sorted(set(self.state) - self.used)
        problems = []
        if self.missing:
            problems.append("missing keys: " + _few(self.missing))
        if unused:
            problems.append("keys with no place in maskgen's model: " + _few(unused))
        if self.shapes:
            problems.append("shape mismatch: " + _few(self.shapes))
        if problems:
            raise MaskgenError(f"checkpoint does not match a {self.what}: " + "; ".join(problems))


def heads_for(width: int, heads: int | None, presets: Mapping[int, int], what: str) -> int:
    """Attention heads: given, or the published presets' head count for this width (the
    files do not record it, and no shape implies it)."""
    if heads is not None:
        return heads
    if width not in presets:
        known = ", ".join(f"{w}: {h}" for w, h in sorted(presets.items()))
        raise MaskgenError(f"cannot tell the attention heads of a {what} of width {width} (published widths: {known}); give the head count: --heads N (heads=N in Python)")
    return presets[width]
