"""Progress of long work, on a terminal and in a log file alike: every loop maskgen shows
progress for goes through :func:`progress`.

- stderr is a terminal: a normal tqdm bar.
- stderr is not a terminal (a pipe, ``nohup``, a scheduler's log file): tqdm would write
  one endless line of carriage returns, or nothing at all. Instead a plain line::

      encoding vq: 12,800/60,000 (21%) 0:01:02 elapsed, 206 img/s

  at most every ``MASKGEN_PROGRESS_INTERVAL`` seconds (default 30; 0 prints every update)
  and once at the end. A bar that a terminal would erase at its end (``leave=False``: the
  steps of one sampling call) prints its end line only if it printed a line before; a loop
  ended by an error prints no end line (the error's own line follows).

Ground floor: imports nothing of maskgen but ``errors``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable, Iterator

from .errors import MaskgenError

ENV = "MASKGEN_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def interval() -> float:
    """Seconds between two progress lines off a terminal (``MASKGEN_PROGRESS_INTERVAL``)."""
    text = os.environ.get(ENV)
    if text is None or not text.strip():
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise MaskgenError(f"{ENV}={text!r}: give the seconds between progress lines, a number >= 0 (default {DEFAULT_INTERVAL:g})")
    return value


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LineProgress:
    """The plain-line progress of a loop off a terminal; the part of tqdm's interface
    maskgen uses (iterate, ``update``, ``set_postfix``, ``close``, a context manager)."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, leave: bool = True, every: float | None = None, file: Any = None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit, self.leave = iterable, total, desc, unit, leave
        self.n = self.initial = initial
        self.every = interval() if every is None else every
        self.file = file
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.printed = self.closed = False
        self.shown: int | None = None  # the count the last line showed

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:  # type: ignore[union-attr]
                yield item
                self.update(1)
        except GeneratorExit:  # the loop was left (an error in its body): the error speaks, not an end line
            self.closed = True
            raise
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.closed = True  # ended by an error, which is the line that follows

    def __len__(self) -> int:
        return self.total or 0

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = f"{self.n:,}" if self.total is None else f"{self.n:,}/{self.total:,}"
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        speed = f"{rate:,.0f} {self.unit}/s" if rate >= 100 else f"{rate:.3g} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.3g} s/{self.unit}"
        post = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc + ': ' if self.desc else ''}{done}{share} {_clock(elapsed)} elapsed, {speed}{post}"

    def _print(self) -> None:
        print(self.line(), file=self.file or sys.stderr, flush=True)
        self.printed, self.last, self.shown = True, time.monotonic(), self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every and not self.closed:
            self._print()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(values or {}), **kw}.items())

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if (self.leave or self.printed) and self.shown != self.n:  # the end, unless the last line showed it
            self._print()


def on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, leave: bool = True, disable: bool = False, **tqdm_options: Any):
    """``iterable`` (or a bar of ``total`` counted by ``update``) with its progress shown on
    stderr: a tqdm bar on a terminal, else a plain line at intervals (module docstring).
    ``disable``: no progress at all (a plain iterator, or a bar object that shows nothing)."""
    from tqdm.auto import tqdm

    if disable or on_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable, **tqdm_options)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave)
