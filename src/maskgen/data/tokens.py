"""Token caches: the discrete codes of a VQ tokenizer over a dataset (see :mod:`.cache`).

``tokens.npy`` is int16 (int32 when the codebook exceeds 32767 codes) [N,h,w], or
[N,2,h,w] with both horizontal flips (``encode --flips``); meta.json adds ``codebook_size``.
int16 holds every published image codebook (VQGAN's 1024 to 16384 codes) at half the size
of int32: an ImageNet cache of 16x16 codes with flips is 1.3 GB instead of 2.6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import MaskgenError
from .cache import CacheDataset

FORMAT = "maskgen-token-cache-v1"


def token_dtype(codebook_size: int) -> np.dtype:
    """The smallest stored dtype that holds codes 0..codebook_size-1 (and the mask id)."""
    return np.dtype(np.int16) if codebook_size <= 32767 else np.dtype(np.int32)


class TokenDataset(CacheDataset):
    """Token grids with labels, from a cache folder (memory-mapped) or from tensors.

    ``__getitem__(i) -> (tokens int64 [h*w], label int64 scalar)``;
    ``batch(indices) -> (tokens int64 [B, h*w], labels int64 [B])``.
    """

    kind = "tokens"
    what = "token cache"
    item_dtype = torch.int64

    def _read_meta(self, meta: dict[str, Any]) -> None:
        self._codebook_size = int(meta["codebook_size"])

    def _check_array(self, array: np.ndarray, folder: Path) -> None:
        """Integer codes, every one inside the codebook meta.json names: checked here, when the
        cache is opened, in chunks of the memory map (an ImageNet cache with flips, 1.3 GB, in
        about a second), so a code past the codebook is one line naming the cache, not an
        IndexError in an embedding lookup mid-training."""
        if array.dtype.kind != "i":
            raise MaskgenError(f"token cache {folder}: tokens.npy is {array.dtype}, expected integer codes")
        k, rows = self._codebook_size, max(1, (1 << 24) // max(1, int(np.prod(array.shape[1:]))))
        for start in range(0, len(array), rows):
            part = np.asarray(array[start : start + rows])
            if part.size and (int(part.min()) < 0 or int(part.max()) >= k):
                bad = int(part.max()) if int(part.max()) >= k else int(part.min())
                raise MaskgenError(f"token cache {folder}: tokens.npy holds code {bad}, outside the codebook 0..{k - 1} that meta.json names (codebook_size {k})")

    @property
    def item_tail(self) -> tuple[int, ...]:
        return ()

    @classmethod
    def from_tensors(
        cls,
        tokens: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        codebook_size: int,
        class_names: Sequence[str],
    ) -> "TokenDataset":
        """An in-memory token dataset from tokens [N,h,w] and labels [N]."""
        tokens = torch.as_tensor(tokens)
        if tokens.ndim != 3 or tokens.dtype.is_floating_point:
            raise MaskgenError(f"tokens must be an integer tensor [N,h,w], got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= codebook_size):
            raise MaskgenError(f"tokens must lie in 0..{codebook_size - 1}")
        return cls._in_memory(tokens, labels, class_names, _codebook_size=int(codebook_size))

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    # -- writing (``encode_dataset``) ------------------------------------------------------
    @staticmethod
    def layout(tokenizer: Any) -> tuple[np.dtype, tuple[int, ...], dict[str, Any]]:
        """(stored dtype, item tail, meta.json fields) of a cache of ``tokenizer``'s codes."""
        codebook_size = int(getattr(tokenizer, "codebook_size"))
        if codebook_size < 1:
            raise MaskgenError(f"tokenizer codebook_size must be positive, got {codebook_size}")
        return token_dtype(codebook_size), (), {"format": FORMAT, "codebook_size": codebook_size}

    @staticmethod
    def stored(encoded: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
        """Check one batch of ``tokenizer.encode`` output ([B,h,w] codes); return it as int64 [B,h,w]."""
        if encoded.ndim != 3:
            raise MaskgenError(f"tokenizer.encode returned shape {tuple(encoded.shape)}, expected [B,h,w]")
        codes = encoded.to("cpu", torch.int64)
        k = meta["codebook_size"]
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= k):
            raise MaskgenError(f"tokenizer produced codes outside 0..{k - 1}")
        return codes

    def __repr__(self) -> str:
        where = f"{str(self.folder)!r}, " if self.folder else ""
        return f"TokenDataset({where}n={len(self)}, grid={self.grid}, codebook_size={self.codebook_size}, classes={self.num_classes})"
