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


def add_malloc_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc thresholds as they are (the maskgen command keeps freed memory, maskgen.memory; so does this benchmark without the flag)")


def apply_malloc(args: argparse.Namespace) -> str:
    """Set malloc as the maskgen command does, unless ``--default-malloc``; a note for the header.
    Call it before the first large allocation."""
    if args.default_malloc:
        return "malloc: glibc default"
    from maskgen.memory import keep_freed_memory

    return "malloc: freed memory kept (maskgen.memory)" if keep_freed_memory() else "malloc: unchanged (not glibc, or malloc settings in the environment)"
