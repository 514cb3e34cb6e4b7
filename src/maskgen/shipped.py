"""Where the reference models shipped in the package live (``maskgen/reference``): what every verb
samples, scores against or tunes when no ``--model`` / ``--ref`` is given."""

from __future__ import annotations

from pathlib import Path

from .errors import MaskgenError

PACKAGE = Path(__file__).resolve().parent
REFERENCE = Path(__file__).parent / "reference"


def reference_dir() -> Path:
    """The reference models shipped in the package (``maskgen/reference``)."""
    if not (REFERENCE / "generator.safetensors").is_file():
        raise MaskgenError(f"the reference models are missing from this install ({REFERENCE}); pass --model DIR")
    return REFERENCE
