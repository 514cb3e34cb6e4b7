"""Helpers the benchmark scripts share."""

import argparse
import os


def parse_grid(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 8x8 or 8, got {text!r}") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"grid must look like 8x8 or 8, got {text!r}")
    return dims  # type: ignore[return-value]


def load_note() -> str:
    try:
        return f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load average n/a"
