"""``maskgen import``: a published generator and its tokenizer into one maskgen model folder.

The folder written is an ordinary maskgen model folder (``generator.*`` and ``tokenizer.*``,
safetensors plus JSON), so every sampler, fine-tuning verb and ``eval`` works on it unchanged;
the formats and their converters are ``maskgen.convert.formats.FORMATS``.
"""

from __future__ import annotations

from pathlib import Path

from ..convert.formats import FORMATS
from ..errors import MaskgenError
from ..validate import integer
from .maskgen import MaskGen


def import_published(fmt: str, generator: str | Path, tokenizer: str | Path, out: str | Path, image_size: int = 256, heads: int | None = None, use_ema: bool = True) -> Path:
    """Convert a published ``generator`` checkpoint and its ``tokenizer`` into the model folder ``out``."""
    if fmt not in FORMATS:
        raise MaskgenError(f"unknown import format {fmt!r}; choose from {', '.join(FORMATS)}")
    if (Path(out) / "generator.json").is_file():
        raise MaskgenError(f"{out} already holds a model; import into a new folder")
    integer("--image-size", image_size, 1)  # every cheap check before a checkpoint is read
    if heads is not None:
        integer("--heads", heads, 1)
    for option, path in (("--generator", Path(generator)), ("--tokenizer", Path(tokenizer))):
        if not path.is_file():
            raise MaskgenError(f"{option} {path}: {'a folder, not a checkpoint file' if path.is_dir() else 'no such file'}")
    f = FORMATS[fmt]
    tok = f.tokenizer(Path(tokenizer), image_size)
    gen = f.generator(Path(generator), tok, heads, use_ema)
    MaskGen(gen, tok)  # the pair must fit (grid, codebook or token dim) before anything is written
    out = Path(out)
    source = {"format": fmt, "generator_file": str(generator), "tokenizer_file": str(tokenizer)}
    tok.save(out, imported_from=source)
    gen.save(out, imported_from=source)
    return out
