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

from pathlib import Path

import torch

from ..checkpoint import load_json
from ..errors import MaskgenError
from .kl import KLConfig, KLTokenizer
from .ldm_kl import LDMKLTokenizer
from .objective import KLObjective, VQObjective
from .taming_vq import TamingVQTokenizer
from .vq import VQConfig, VQTokenizer

KINDS = {"vq": (VQConfig, VQTokenizer, VQObjective), "kl": (KLConfig, KLTokenizer, KLObjective)}
"""kind -> (config class, tokenizer class, training objective class)."""

IMPORTED = {"taming_vq": TamingVQTokenizer, "ldm_kl": LDMKLTokenizer}
"""kind -> tokenizer class, for the load-only kinds of published autoencoders."""


def kind_of(config: VQConfig | KLConfig) -> str:
    """``vq`` or ``kl`` for a tokenizer config."""
    for kind, (config_class, _, _) in KINDS.items():
        if isinstance(config, config_class):
            return kind
    raise MaskgenError(f"not a tokenizer config: {type(config).__name__}")


def _classes() -> dict[str, type]:
    return {**{kind: model_class for kind, (_, model_class, _) in KINDS.items()}, **IMPORTED}


def tokenizer_kind(folder: str | Path) -> str:
    """The kind (``vq``, ``kl``, ``taming_vq``, ``ldm_kl``) of the tokenizer checkpoint in ``folder`` (read from its JSON)."""
    record = load_json(Path(folder) / "tokenizer.json")
    recorded = record.get("kind", VQTokenizer.checkpoint_kind)  # checkpoints before `kind` were VQ
    for kind, model_class in _classes().items():
        if recorded == model_class.checkpoint_kind:
            return kind
    raise MaskgenError(f"{folder}/tokenizer.json holds a {recorded}, not a tokenizer")


def load_tokenizer(folder: str | Path, map_location: str | torch.device = "cpu") -> VQTokenizer | KLTokenizer | TamingVQTokenizer:
    """The tokenizer in ``folder``, of whichever kind it is (eval mode, ``sha256`` set)."""
    return _classes()[tokenizer_kind(folder)].load(folder, map_location)


def is_continuous(folder: str | Path) -> bool:
    """Whether the tokenizer in ``folder`` gives continuous latents (a KL autoencoder, trained
    here or imported) rather than code ids."""
    return issubclass(_classes()[tokenizer_kind(folder)], KLTokenizer)
