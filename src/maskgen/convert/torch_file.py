"""Reading a published PyTorch checkpoint without running its pickle, and loading it strictly.

Published checkpoints (``.ckpt``, ``.pth``) are pickles. They are read with ``torch.load``'s
``weights_only`` unpickler, which builds tensors and plain containers only; any other
object a file names is refused before it is looked up, unless the caller allowlists it,
and then only as an inert stand-in (:func:`stand_in`), never the real class.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..checkpoint import check_state_dict
from ..errors import MaskgenError

Allowlist = Sequence["type | tuple[type, str]"]
"""Classes a format is known to pickle (MAR's ``argparse.Namespace``), or (stand-in class,
the dotted name the pickle uses for it)."""


def stand_in(name: str) -> type:
    """An inert class to allowlist under ``name``: the pickle gets it instead of the class it
    names (used as a dict key, or instantiated with its state discarded)."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self: Any, state: Any) -> None:
        pass

    return type(f"StandIn[{name}]", (), {"__init__": __init__, "__setstate__": __setstate__, "__module__": __name__})


def read_torch_file(path: str | Path, what: str, allowed: Allowlist = ()) -> Any:
    """``torch.load(path)`` with the ``weights_only`` unpickler, on the CPU; every object that is
    not a tensor or a plain container must be in ``allowed``. Any failure is one line."""
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"{what} file does not exist: {path}" if not path.exists() else f"{what} {path} is not a file")
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        if found:
            reason = f"it pickles {found.group(1)}, which is not a tensor or on the allowlist, so it is never unpickled"
            raise MaskgenError(f"refusing to read {what} {path}: {reason}") from None
        raise MaskgenError(f"cannot read {what} {path} as a PyTorch checkpoint: {_reason(e)}") from None
    except EOFError:
        raise MaskgenError(f"cannot read {what} {path} as a PyTorch checkpoint: the file is empty or cut short") from None
    except (RuntimeError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise MaskgenError(f"cannot read {what} {path} as a PyTorch checkpoint: {_reason(e)}") from None


def _reason(e: BaseException) -> str:
    """The line of a torch error that says what was wrong (torch wraps the unpickler's own
    reason in advice about ``weights_only=False``, which is never taken here)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def state_dict_at(checkpoint: Any, key: str, what: str) -> dict[str, torch.Tensor]:
    """``checkpoint[key]``, checked to be a mapping of names to tensors."""
    if not isinstance(checkpoint, Mapping) or key not in checkpoint:
        found = ", ".join(map(str, checkpoint)) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise MaskgenError(f"{what} has no {key!r} entry (found: {found})")
    state = checkpoint[key]
    if not isinstance(state, Mapping):
        raise MaskgenError(f"{what}: {key!r} is a {type(state).__name__}, not a state dict")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise MaskgenError(f"{what}: {key!r} holds entries that are not named tensors: {', '.join(bad[:8])}")
    return dict(state)


def load_strict(module: nn.Module, weights: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Load ``weights`` into ``module``: every key present, none extra, every shape equal
    (one line naming them otherwise); floating weights cast to the module's dtype (float16
    files load into float32 exactly). Returns the module in eval mode."""
    expected = module.state_dict()
    check_state_dict(expected, weights, f"{type(module).__name__} (reading {what})")
    not_float = sorted(k for k, v in weights.items() if expected[k].is_floating_point() and not v.is_floating_point())
    if not_float:
        raise MaskgenError(f"{what}: integer tensors where weights belong: {', '.join(not_float[:8])}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=True)
    return module.eval()
