"""Checks of user-given values, each ending in the one-line ``MaskgenError`` the CLI prints.

The config dataclasses call the number checks from ``__post_init__``, so the command line,
a YAML recipe and the Python API refuse the same values with the same message, before a
model is built or a file written. A string, a bool, NaN or an infinity where a number
belongs is refused here too: Python would otherwise carry it into a ``%`` or a comparison
and fail deep inside with a message that names no option. The path checks run before any
work starts, so a run never trains for an hour and then fails on its first write.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from .errors import MaskgenError


def _prefix(owner: str | None) -> str:
    return f"invalid {owner}: " if owner else ""


def integer(name: str, value: Any, minimum: int | None = 1, owner: str | None = None) -> int:
    """``value`` as an int, refused unless it is an integer (not a bool) >= ``minimum``."""
    bound = f" >= {minimum}" if minimum is not None else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        raise MaskgenError(f"{_prefix(owner)}{name} must be an integer{bound}, got {value!r}")
    return int(value)


def integers(name: str, text: Any) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3] for option ``name``; one line if an item is not an integer or none is given."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise MaskgenError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise MaskgenError(f"{name} is empty")
    return values


def number(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    owner: str | None = None,
) -> float:
    """``value`` as a float, refused unless it is a finite real number in the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise MaskgenError(f"{_prefix(owner)}{name} must be a finite number, got {value!r}")
    v = float(value)
    below = lo is not None and (v <= lo if lo_open else v < lo)
    above = hi is not None and (v >= hi if hi_open else v > hi)
    if below or above:
        if lo is not None and hi is not None:
            where = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            where = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            where = f"{'<' if hi_open else '<='} {hi:g}"
        raise MaskgenError(f"{_prefix(owner)}{name} must be {where}, got {value!r}")
    return v


def pair(name: str, value: Any, owner: str | None = None) -> tuple[Any, Any]:
    """``value`` as a 2-tuple (JSON and YAML give lists), refused unless it has two items."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise MaskgenError(f"{_prefix(owner)}{name} must be a pair of two values, got {value!r}")
    return tuple(value)  # type: ignore[return-value]


def flag(name: str, value: Any, owner: str | None = None) -> bool:
    """A bool, refused otherwise: ``bool("false")`` is True, so nothing is coerced."""
    if not isinstance(value, bool):
        raise MaskgenError(f"{_prefix(owner)}{name} must be true or false, got {value!r}")
    return value


def text(name: str, value: Any, owner: str | None = None) -> str:
    """A string (a schedule, a mode name), refused otherwise so lookups never see a number."""
    if not isinstance(value, str):
        raise MaskgenError(f"{_prefix(owner)}{name} must be a string, got {value!r}")
    return value


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_dir(path: str | Path, option: str = "--out") -> Path:
    """Refuse an output folder that is an existing file or cannot be created or written."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise MaskgenError(f"{option} {p} is an existing file, not a folder")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise MaskgenError(f"{option} {p} cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise MaskgenError(f"{option} {p} cannot be written: no write permission in {base}")
    return p


def writable_file(path: str | Path, option: str = "--out") -> Path:
    """Refuse an output file that is an existing folder or whose folder cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise MaskgenError(f"{option} {p} is an existing folder, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise MaskgenError(f"{option} {p} cannot be written: no write permission")
    base = _nearest_existing(p.parent)
    if not base.is_dir():
        raise MaskgenError(f"{option} {p} cannot be created: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise MaskgenError(f"{option} {p} cannot be written: no write permission in {base}")
    return p
