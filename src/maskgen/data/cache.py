"""Encoded-dataset caches: run the tokenizer over a dataset once, train on its output many times.

A cache is a folder holding

- ``meta.json``: ``kind`` (``tokens`` or ``latents``), ``format``, grid [h,w], num_classes,
  class_names, count, dtype, tokenizer_sha256 (or null), ``views`` (1, or 2 with flips;
  absent in caches written before flips: 1), and the kind's own fields;
- ``labels.npy``: int64 [N];
- the encoded array, memory-mapped when read: ``tokens.npy`` (discrete codes of a VQ
  tokenizer, :class:`~maskgen.data.TokenDataset`) or ``latents.npy`` (continuous latents of
  a KL tokenizer, :class:`~maskgen.data.LatentDataset`), [N, h, w, ...]; a cache with both
  horizontal flips (``maskgen encode --flips``, as MAR (Li et al. 2024) caches ImageNet) has
  a views axis, [N, 2, h, w, ...], view 0 the cropped image as it is and view 1 its mirror
  image (flipped after the crop, as MAR flips its preprocessed batch).

Items and ``to_tensors`` give view 0; ``batch(indices, views)`` picks a view per item, which
is how training draws one of the two flips per example at random (``StepBatches``).

:class:`CacheDataset` holds everything the two kinds share; each kind says which file it
reads, which dtypes it accepts, what one item looks like and what it adds to meta.json.
Caches written before ``kind`` existed are token caches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checkpoint import load_json
from ..errors import MaskgenError

ARRAY_FILES = {"tokens": "tokens.npy", "latents": "latents.npy"}
_NUMPY = {torch.int64: np.int64, torch.float32: np.float32}


def cache_kind(folder: str | Path) -> str | None:
    """``tokens`` or ``latents`` for a folder holding a cache of that kind, else None."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        return None
    for kind, name in ARRAY_FILES.items():
        if (folder / name).is_file():
            return kind
    return None


def is_token_cache(folder: str | Path) -> bool:
    """True for a folder holding a cache of either kind (discrete tokens or continuous latents)."""
    return cache_kind(folder) is not None


class CacheDataset(Dataset):
    """Encoded grids with labels, from a cache folder (memory-mapped) or from tensors.

    ``__getitem__(i) -> (item [h*w, *item_tail], label int64 scalar)``;
    ``batch(indices, views=None) -> (items [B, h*w, *item_tail], labels int64 [B])``.
    ``views`` is the number of stored views of each item (1, or 2 with both flips).
    """

    kind: ClassVar[str]
    what: ClassVar[str]  # "token cache", "latent cache": how errors name it
    item_dtype: ClassVar[torch.dtype]  # what items come out as

    # -- what a kind defines ---------------------------------------------------------------
    def _read_meta(self, meta: dict[str, Any]) -> None:
        """Set the kind's own attributes from meta.json (KeyError/TypeError/ValueError: corrupt)."""
        raise NotImplementedError

    def _check_array(self, array: np.ndarray, folder: Path) -> None:
        """Refuse a stored array of the wrong dtype."""
        raise NotImplementedError

    @property
    def item_tail(self) -> tuple[int, ...]:
        """Shape of one grid position's entry: () for a token, (d,) for a latent vector."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise MaskgenError(f"{self.what} does not exist: {folder}")
        array_file = ARRAY_FILES[self.kind]
        for name in ("meta.json", array_file, "labels.npy"):
            if not (folder / name).is_file():
                raise MaskgenError(f"incomplete {self.what} {folder}: missing {name}")
        meta = load_json(folder / "meta.json")
        try:
            if meta.get("kind", "tokens") != self.kind:
                raise ValueError(f"it holds {meta.get('kind')}, not {self.kind}")
            grid = [int(g) for g in meta["grid"]]
            class_names = [str(c) for c in meta["class_names"]]
            count = int(meta["count"])
            views = int(meta.get("views", 1))
            if views < 1:
                raise ValueError(f"views must be at least 1, got {views}")
            self._read_meta(meta)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise MaskgenError(f"corrupt {self.what} meta.json in {folder}: {type(e).__name__} {e}") from None
        try:
            array = np.load(folder / array_file, mmap_mode="r", allow_pickle=False)
            labels = np.load(folder / "labels.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise MaskgenError(f"corrupt or truncated {self.what} {folder}: {e}") from None
        # one view is stored without its axis: the layout of caches written before flips
        expected = (count, *((views,) if views > 1 else ()), *grid, *self.item_tail)
        if array.shape != expected:
            raise MaskgenError(f"{self.what} {folder}: {array_file} is {array.dtype} {array.shape}, meta says {list(expected)}")
        self._check_array(array, folder)
        if labels.shape != (count,):
            raise MaskgenError(f"{self.what} {folder}: labels.npy has shape {labels.shape}, expected ({count},)")
        self.folder: Path | None = folder
        self.tokenizer_sha256: str | None = meta.get("tokenizer_sha256")
        self._init(array if views > 1 else array[:, None], torch.from_numpy(labels.astype(np.int64)), class_names)

    def _init(self, array: np.ndarray | torch.Tensor, labels: torch.Tensor, class_names: Sequence[str]) -> None:
        """``array``: [N, views, h, w, *item_tail]."""
        self._array = array
        self.labels = labels
        self._grid = (int(array.shape[2]), int(array.shape[3]))
        self.class_names = list(class_names)
        if labels.numel() and self.class_names and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise MaskgenError(f"{self.what} labels must lie in 0..{len(self.class_names) - 1}")

    @classmethod
    def _in_memory(cls, array: torch.Tensor, labels: torch.Tensor | Sequence[int], class_names: Sequence[str], **attrs: Any):
        """A dataset over tensors already in the item dtype (``from_tensors`` of each kind)."""
        labels = torch.as_tensor(labels).long().reshape(-1).cpu()
        if labels.shape[0] != array.shape[0]:
            raise MaskgenError(f"{array.shape[0]} grids but {labels.shape[0]} labels")
        self = cls.__new__(cls)
        self.folder = None
        self.tokenizer_sha256 = None
        self.__dict__.update(attrs)
        self._init(array.detach().cpu().to(cls.item_dtype).contiguous()[:, None], labels, [str(c) for c in class_names])
        return self

    def _items(self, stored: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(stored, torch.Tensor):
            return stored
        # a copy in the item dtype: the memory map itself is read-only
        return torch.from_numpy(np.array(stored, dtype=_NUMPY[self.item_dtype]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def grid(self) -> tuple[int, int]:
        return self._grid

    @property
    def views(self) -> int:
        """Stored views of each item: 1, or 2 when the cache holds both horizontal flips."""
        return int(self._array.shape[1])

    @property
    def seq_len(self) -> int:
        return self._grid[0] * self._grid[1]

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._items(self._array[i, 0]).reshape(self.seq_len, *self.item_tail), self.labels[i]

    def batch(self, indices: torch.Tensor, views: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Items [B, h*w, *item_tail] and labels [B] at ``indices``; ``views`` [B] picks the
        stored view of each (None: view 0, the images as they are)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        view = torch.zeros_like(idx) if views is None else torch.as_tensor(views, dtype=torch.long).reshape(-1)
        if view.shape != idx.shape or (view.numel() and (int(view.min()) < 0 or int(view.max()) >= self.views)):
            raise MaskgenError(f"views must be {len(idx)} values in 0..{self.views - 1}")
        if isinstance(self._array, torch.Tensor):
            stored = self._array[idx, view]
        else:
            stored = self._array[idx.numpy(), view.numpy()]
        return self._items(stored).reshape(len(idx), self.seq_len, *self.item_tail), self.labels[idx]

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items [N, h, w, *item_tail] (view 0) and labels [N] in memory."""
        return self._items(self._array[:, 0]), self.labels
