"""The published checkpoint formats ``maskgen import`` reads: a format names the pair of
converters for a generator checkpoint and the tokenizer it was trained with
(``maskgen.pipelines.imported`` writes them as a model folder)."""

from __future__ import annotations

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
