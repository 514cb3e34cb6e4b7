"""``maskgen import``: a published generator and its tokenizer into one maskgen model folder.

A format names the pair of converters for a generator checkpoint and the tokenizer it was
trained with; the folder written is an ordinary maskgen model folder (``generator.*`` and
``tokenizer.*``, safetensors plus JSON), so every sampler, fine-tuning verb and ``eval``
works on it unchanged.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import MaskgenError


@dataclass(frozen=True)
class Format:
    about: str
    generator: Callable[..., object]  # (path, tokenizer, heads, use_ema) -> generator module
    tokenizer: Callable[[Path, int], object]  # (path, image_size) -> tokenizer module


def _valeoai_generator(path: Path, tokenizer, heads: int | None, use_ema: bool):
    from .valeoai_v1 import convert_valeoai_v1

    if not use_ema:
        raise MaskgenError("--raw-weights applies to MAR/eMIGM checkpoints (model vs model_ema); valeoai v1 files hold one state dict")
    return convert_valeoai_v1(path, codebook_size=tokenizer.codebook_size, heads=heads)


def _valeoai_tokenizer(path: Path, image_size: int):
    from .taming_vqgan import convert_taming_vqgan

    return convert_taming_vqgan(path, image_size=image_size)


def _mar_generator(path: Path, tokenizer, heads: int | None, use_ema: bool):
    from .mar import convert_mar

    return convert_mar(path, use_ema=use_ema, heads=heads)


def _mar_tokenizer(path: Path, image_size: int):
    from .mar_vae import convert_mar_vae

    return convert_mar_vae(path, image_size=image_size)


FORMATS = {
    "valeoai-v1": Format("valeoai/Maskgit-pytorch v1 MaskGIT (model_state_dict) + its taming VQGAN f16-1024 (Lightning last.ckpt)", _valeoai_generator, _valeoai_tokenizer),
    "mar": Format("MAR or eMIGM generator (checkpoint-last.pth: model / model_ema) + MAR's KL-16 VAE (kl16.ckpt)", _mar_generator, _mar_tokenizer),
}


def import_published(fmt: str, generator: str | Path, tokenizer: str | Path, out: str | Path, image_size: int = 256, heads: int | None = None, use_ema: bool = True) -> Path:
    """Convert a published ``generator`` checkpoint and its ``tokenizer`` into the model folder ``out``."""
    from ..pipeline import MaskGen

    if fmt not in FORMATS:
        raise MaskgenError(f"unknown import format {fmt!r}; choose from {', '.join(FORMATS)}")
    if (Path(out) / "generator.json").is_file():
        raise MaskgenError(f"{out} already holds a model; import into a new folder")
    from ..validate import integer

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


def add_import_options(p: argparse.ArgumentParser) -> None:
    """``maskgen import``'s options."""
    p.add_argument("--format", required=False, help=" or ".join(f"{name} ({f.about})" for name, f in FORMATS.items()))
    p.add_argument("--generator", required=False, help="the published generator checkpoint (.pth)")
    p.add_argument("--tokenizer", required=False, help="the published tokenizer checkpoint (.ckpt)")
    p.add_argument("--out", required=False, help="model folder to write")
    p.add_argument("--image-size", type=int, default=256, help="image size the tokenizer works at (not recorded in the files)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: the published preset for the width)")
    p.add_argument("--raw-weights", dest="use_ema", action="store_false", help="MAR/eMIGM: the raw weights (model) instead of the EMA ones")
