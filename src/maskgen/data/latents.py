"""Latent caches: the continuous latents of a KL tokenizer over a dataset (see :mod:`.cache`).

``latents.npy`` is float16 [N,h,w,d], or [N,2,h,w,d] with both horizontal flips (``encode
--flips``); float16 keeps 11 significant bits of latents scaled to unit std and halves
float32's size (ImageNet's 1,281,167 images as MAR's 16x16 latents of dim 16, both flips:
21 GB instead of 42). Each entry is the posterior *mean* of each image, already
multiplied by the tokenizer's ``scale`` (what ``KLTokenizer.encode(images)`` returns), so a
cache is a deterministic function of tokenizer and data. MAR (Li et al. 2024) instead caches
the posterior moments and draws a fresh sample at every training step; the mean is the
simpler and smaller choice here, and its std is what the scale was measured on. meta.json
adds ``token_dim``, ``scale`` and ``posterior: "mean"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import MaskgenError
from .cache import CacheDataset

FORMAT = "maskgen-latent-cache-v1"
STORED = np.dtype(np.float16)
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class LatentDataset(CacheDataset):
    """Latent grids with labels, from a cache folder (memory-mapped) or from tensors.

    ``__getitem__(i) -> (latents float32 [h*w, d], label int64 scalar)``;
    ``batch(indices) -> (latents float32 [B, h*w, d], labels int64 [B])``. Latents are scaled
    as ``KLTokenizer.encode`` returns them and ``KLTokenizer.decode`` takes them.
    """

    kind = "latents"
    what = "latent cache"
    item_dtype = torch.float32

    def _read_meta(self, meta: dict[str, Any]) -> None:
        self._token_dim = int(meta["token_dim"])
        self.scale = float(meta["scale"])

    def _check_array(self, array: np.ndarray, folder: Path) -> None:
        if array.dtype.kind != "f":
            raise MaskgenError(f"latent cache {folder}: latents.npy is {array.dtype}, expected floats")

    @property
    def item_tail(self) -> tuple[int, ...]:
        return (self._token_dim,)

    @classmethod
    def from_tensors(cls, latents: torch.Tensor, labels: torch.Tensor | Sequence[int], class_names: Sequence[str], scale: float = 1.0) -> "LatentDataset":
        """An in-memory latent dataset from latents [N,h,w,d] and labels [N]."""
        latents = torch.as_tensor(latents)
        if latents.ndim != 4 or not latents.dtype.is_floating_point:
            raise MaskgenError(f"latents must be a float tensor [N,h,w,d], got {latents.dtype} {tuple(latents.shape)}")
        return cls._in_memory(latents, labels, class_names, _token_dim=int(latents.shape[3]), scale=float(scale))

    @property
    def token_dim(self) -> int:
        return self._token_dim

    # -- writing (``encode_dataset``) ------------------------------------------------------
    @staticmethod
    def layout(tokenizer: Any) -> tuple[np.dtype, tuple[int, ...], dict[str, Any]]:
        """(stored dtype, item tail, meta.json fields) of a cache of ``tokenizer``'s latents."""
        d = int(tokenizer.token_dim)
        h, w = (int(g) for g in tokenizer.grid)
        meta = {"format": FORMAT, "token_dim": d, "scale": float(tokenizer.scale), "posterior": "mean", "grid": [h, w]}
        return STORED, (d,), meta

    @staticmethod
    def stored(encoded: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """Check one batch of ``tokenizer.encode`` output ([B, h*w, d]); return it as [B,h,w,d]."""
        (h, w), d = meta["grid"], meta["token_dim"]
        if encoded.ndim != 3 or tuple(encoded.shape[1:]) != (h * w, d) or not encoded.is_floating_point():
            raise MaskgenError(f"tokenizer.encode returned {encoded.dtype} {tuple(encoded.shape)}, expected floats [B,{h * w},{d}]")
        z = encoded.detach().to("cpu", torch.float32)
        if not bool(torch.isfinite(z).all()) or (z.numel() and float(z.abs().max()) > _FLOAT16_MAX):
            raise MaskgenError(f"tokenizer produced latents that are not finite or exceed float16's range (+-{_FLOAT16_MAX:g})")
        return z.reshape(-1, h, w, d)

    def __repr__(self) -> str:
        where = f"{str(self.folder)!r}, " if self.folder else ""
        return f"LatentDataset({where}n={len(self)}, grid={self.grid}, token_dim={self.token_dim}, scale={self.scale:.4g}, classes={self.num_classes})"
