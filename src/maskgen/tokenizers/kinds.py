"""The tokenizer kinds, and which one a checkpoint folder holds.

``vq``: :class:`VQTokenizer`, discrete codes (MaskGIT and its descendants, papers 000/003/004).
``kl``: :class:`KLTokenizer`, continuous latents (eMIGM, You et al. 2025; MAR, Li et al. 2024).
Both save as ``tokenizer.{safetensors,json}``; the JSON's ``kind`` tells them apart.

Published autoencoders converted by :mod:`maskgen.convert` load the same way but are not
trained here, so they have no objective: ``taming_vq`` (:class:`TamingVQTokenizer`, VQGAN,
Esser et al. 2021; discrete codes) and ``ldm_kl`` (:class:`LDMKLTokenizer`, LDM's KL
autoencoder as MAR uses it; continuous latents, a kind of :class:`KLTokenizer`).

A joint image+segmentation model folder also holds ``seg-tokenizer.{safetensors,json}``, a
:class:`~maskgen.tokenizers.segmentation.SegmentationTokenizer` (label maps, kind
``segmentation_tokenizer``): not an image tokenizer, so not one of the kinds above; it loads
with ``SegmentationTokenizer.load`` next to the folder's image tokenizer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..checkpoint import file_sha256, load_json
from ..errors import MaskgenError
from .kl import KLConfig, KLTokenizer
from .ldm_kl import LDMKLTokenizer
from .taming_vq import TamingVQTokenizer
from .vq import VQConfig, VQTokenizer

KINDS = {"vq": (VQConfig, VQTokenizer), "kl": (KLConfig, KLTokenizer)}
"""kind -> (config class, tokenizer class) of the kinds maskgen trains (their objectives:
``maskgen.training.tokenizer``)."""

IMPORTED = {"taming_vq": TamingVQTokenizer, "ldm_kl": LDMKLTokenizer}
"""kind -> tokenizer class, for the load-only kinds of published autoencoders."""


def kind_of(config: VQConfig | KLConfig) -> str:
    """``vq`` or ``kl`` for a tokenizer config."""
    for kind, (config_class, _) in KINDS.items():
        if isinstance(config, config_class):
            return kind
    raise MaskgenError(f"not a tokenizer config: {type(config).__name__}")


def _classes() -> dict[str, type]:
    return {**{kind: model_class for kind, (_, model_class) in KINDS.items()}, **IMPORTED}


def tokenizer_kind(folder: str | Path, record: dict | None = None) -> str:
    """The kind (``vq``, ``kl``, ``taming_vq``, ``ldm_kl``) of the tokenizer checkpoint in ``folder``
    (read from its JSON, or from ``record``, that JSON already read)."""
    record = load_json(Path(folder) / "tokenizer.json") if record is None else record
    recorded = record.get("kind", VQTokenizer.checkpoint_kind)  # checkpoints before `kind` were VQ
    for kind, model_class in _classes().items():
        if recorded == model_class.checkpoint_kind:
            return kind
    raise MaskgenError(f"{folder}/tokenizer.json holds a {recorded}, not a tokenizer")


def load_tokenizer(folder: str | Path, *, map_location: str | torch.device | None = None) -> VQTokenizer | KLTokenizer | TamingVQTokenizer:
    """The tokenizer in ``folder``, of whichever kind it is (eval mode, ``sha256`` set); its JSON
    is read once."""
    record = load_json(Path(folder) / "tokenizer.json")
    return _classes()[tokenizer_kind(folder, record)].load(folder, map_location=map_location, record=record)


def is_continuous(folder: str | Path) -> bool:
    """Whether the tokenizer in ``folder`` gives continuous latents (a KL autoencoder, trained
    here or imported) rather than code ids."""
    return issubclass(_classes()[tokenizer_kind(folder)], KLTokenizer)


def copy_tokenizer(src: str | Path, dst: str | Path) -> None:
    """Put the tokenizer's files next to a generator so the model folder stands alone."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        f = src / f"tokenizer{suffix}"
        if not f.is_file():
            raise MaskgenError(f"no tokenizer checkpoint in {src} (missing {f.name})")
        target = dst / f.name
        if f.resolve() != target.resolve() and not (target.is_file() and file_sha256(target) == file_sha256(f)):
            shutil.copyfile(f, target)  # an identical copy (a resumed run's) is left untouched
