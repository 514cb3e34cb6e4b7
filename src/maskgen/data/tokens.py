"""Token caches: run the tokenizer over a dataset once, train on its codes many times.

A cache is a folder holding

- ``tokens.npy``: int16 (int32 when the codebook exceeds 32767 codes) [N,h,w],
- ``labels.npy``: int64 [N],
- ``meta.json``: codebook_size, grid [h,w], num_classes, class_names, count,
  tokenizer_sha256 (or null), dtype, format.

It is written into a hidden temporary folder next to the target and renamed into place
at the end, so a killed run never leaves a folder that looks like a complete cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..checkpoint import load_json, save_json
from ..errors import MaskgenError

FORMAT = "maskgen-token-cache-v1"
_FILES = ("meta.json", "tokens.npy", "labels.npy")


def token_dtype(codebook_size: int) -> np.dtype:
    """The smallest stored dtype that holds codes 0..codebook_size-1 (and the mask id)."""
    return np.dtype(np.int16) if codebook_size <= 32767 else np.dtype(np.int32)


def is_token_cache(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "meta.json").is_file() and (folder / "tokens.npy").is_file()


def _batches(dataset: Dataset, batch_size: int, num_workers: int):
    """Yield (images, labels) batches in dataset order."""
    if num_workers == 0 and hasattr(dataset, "batch"):
        # in-memory datasets slice far faster than collating single items
        n = len(dataset)
        for start in range(0, n, batch_size):
            yield dataset.batch(torch.arange(start, min(start + batch_size, n)))
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing cache at ``out`` is swapped out, then deleted."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, old / "cache")
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def encode_dataset(
    tokenizer: Any,
    dataset: Dataset,
    out: str | Path,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> Path:
    """Encode every image of ``dataset`` with ``tokenizer.encode`` into a token cache at ``out``.

    ``tokenizer.encode(uint8 [B,C,H,W]) -> LongTensor [B,h,w]``; ``tokenizer.codebook_size``
    gives the code range and ``tokenizer.sha256`` (optional) is recorded in meta.json.
    Tokens stream into a memory-mapped file, so memory use does not grow with N.
    An existing token cache (or empty folder) at ``out`` is replaced; any other existing
    path is refused.  Returns ``out``.
    """
    out = Path(out).expanduser()
    if out.exists() and not (out.is_dir() and (is_token_cache(out) or not any(out.iterdir()))):
        raise MaskgenError(f"refusing to overwrite {out}: it exists and is not a token cache")
    codebook_size = int(getattr(tokenizer, "codebook_size"))
    if codebook_size < 1:
        raise MaskgenError(f"tokenizer codebook_size must be positive, got {codebook_size}")
    n = len(dataset)
    if n == 0:
        raise MaskgenError("cannot encode an empty dataset")
    if batch_size < 1:
        raise MaskgenError(f"batch_size must be positive, got {batch_size}")
    dtype = token_dtype(codebook_size)
    class_names = [str(c) for c in getattr(dataset, "class_names", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))

    # eval mode so dropout/batch-norm cannot change the codes; restored afterwards
    was_training = isinstance(tokenizer, torch.nn.Module) and tokenizer.training
    if was_training:
        tokenizer.eval()
    try:
        labels = np.empty(n, dtype=np.int64)
        tokens = None
        grid: list[int] = []
        pos = 0
        with torch.no_grad(), tqdm(total=n, unit="img", desc="encoding tokens", disable=None) as bar:
            for images, batch_labels in _batches(dataset, batch_size, num_workers):
                codes = tokenizer.encode(images.to(device))
                if codes.ndim != 3 or codes.shape[0] != images.shape[0]:
                    raise MaskgenError(f"tokenizer.encode returned shape {tuple(codes.shape)}, expected [B,h,w]")
                codes = codes.to("cpu", torch.int64)
                if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
                    raise MaskgenError(f"tokenizer produced codes outside 0..{codebook_size - 1}")
                if tokens is None:
                    grid = [int(codes.shape[1]), int(codes.shape[2])]
                    tokens = np.lib.format.open_memmap(tmp / "tokens.npy", mode="w+", dtype=dtype, shape=(n, *grid))
                elif list(codes.shape[1:]) != grid:
                    raise MaskgenError(f"tokenizer grid changed from {grid} to {list(codes.shape[1:])}")
                b = codes.shape[0]
                if pos + b > n:
                    raise MaskgenError(f"dataset yielded more than its length {n}")
                tokens[pos : pos + b] = codes.numpy().astype(dtype)
                labels[pos : pos + b] = torch.as_tensor(batch_labels).reshape(-1).cpu().numpy()
                pos += b
                bar.update(b)
        if pos != n:
            raise MaskgenError(f"dataset yielded {pos} images, expected {n}")
        tokens.flush()
        del tokens  # close the memmap before the folder moves
        np.save(tmp / "labels.npy", labels)
        save_json(
            tmp / "meta.json",
            {
                "format": FORMAT,
                "codebook_size": codebook_size,
                "grid": grid,
                "num_classes": len(class_names),
                "class_names": class_names,
                "count": n,
                "dtype": dtype.name,
                "tokenizer_sha256": getattr(tokenizer, "sha256", None),
            },
        )
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if was_training:
            tokenizer.train()
    return out


class TokenDataset(Dataset):
    """Token grids with labels, from a cache folder (memory-mapped) or from tensors.

    ``__getitem__(i) -> (tokens int64 [h*w], label int64 scalar)``;
    ``batch(indices) -> (tokens int64 [B, h*w], labels int64 [B])``.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise MaskgenError(f"token cache does not exist: {folder}")
        for name in _FILES:
            if not (folder / name).is_file():
                raise MaskgenError(f"incomplete token cache {folder}: missing {name}")
        meta = load_json(folder / "meta.json")
        try:
            codebook_size = int(meta["codebook_size"])
            grid = [int(g) for g in meta["grid"]]
            class_names = [str(c) for c in meta["class_names"]]
            count = int(meta["count"])
        except (KeyError, TypeError, ValueError) as e:
            raise MaskgenError(f"corrupt token cache meta.json in {folder}: {type(e).__name__} {e}") from None
        try:
            tokens = np.load(folder / "tokens.npy", mmap_mode="r", allow_pickle=False)
            labels = np.load(folder / "labels.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise MaskgenError(f"corrupt or truncated token cache {folder}: {e}") from None
        if tokens.shape != (count, *grid) or tokens.dtype.kind != "i":
            raise MaskgenError(f"token cache {folder}: tokens.npy is {tokens.dtype} {tokens.shape}, meta says [{count}, {grid[0]}, {grid[1]}]")
        if labels.shape != (count,):
            raise MaskgenError(f"token cache {folder}: labels.npy has shape {labels.shape}, expected ({count},)")
        self.folder: Path | None = folder
        self.tokenizer_sha256: str | None = meta.get("tokenizer_sha256")
        self._init(tokens, torch.from_numpy(labels.astype(np.int64)), codebook_size, class_names)

    def _init(self, tokens: np.ndarray | torch.Tensor, labels: torch.Tensor, codebook_size: int, class_names: Sequence[str]) -> None:
        self._tokens = tokens
        self.labels = labels
        self._codebook_size = int(codebook_size)
        self._grid = (int(tokens.shape[1]), int(tokens.shape[2]))
        self.class_names = list(class_names)
        if labels.numel() and self.class_names and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise MaskgenError(f"token labels must lie in 0..{len(self.class_names) - 1}")

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
        labels = torch.as_tensor(labels).long().reshape(-1).cpu()
        if tokens.ndim != 3 or tokens.dtype.is_floating_point:
            raise MaskgenError(f"tokens must be an integer tensor [N,h,w], got {tokens.dtype} {tuple(tokens.shape)}")
        if labels.shape[0] != tokens.shape[0]:
            raise MaskgenError(f"{tokens.shape[0]} token grids but {labels.shape[0]} labels")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= codebook_size):
            raise MaskgenError(f"tokens must lie in 0..{codebook_size - 1}")
        self = cls.__new__(cls)
        self.folder = None
        self.tokenizer_sha256 = None
        self._init(tokens.detach().cpu().long().contiguous(), labels, codebook_size, [str(c) for c in class_names])
        return self

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    @property
    def grid(self) -> tuple[int, int]:
        return self._grid

    @property
    def seq_len(self) -> int:
        return self._grid[0] * self._grid[1]

    def __len__(self) -> int:
        return int(self._tokens.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self._tokens, torch.Tensor):
            return self._tokens[i].reshape(-1), self.labels[i]
        return torch.from_numpy(np.asarray(self._tokens[i], dtype=np.int64)).reshape(-1), self.labels[i]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, h*w] and labels [B] at ``indices``."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if isinstance(self._tokens, torch.Tensor):
            toks = self._tokens[idx]
        else:
            toks = torch.from_numpy(np.asarray(self._tokens[idx.numpy()], dtype=np.int64))
        return toks.reshape(len(idx), -1), self.labels[idx]

    def to_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All tokens int64 [N,h,w] and labels [N] in memory."""
        if isinstance(self._tokens, torch.Tensor):
            return self._tokens, self.labels
        return torch.from_numpy(np.asarray(self._tokens, dtype=np.int64)), self.labels

    def __repr__(self) -> str:
        where = f"{str(self.folder)!r}, " if self.folder else ""
        return f"TokenDataset({where}n={len(self)}, grid={self.grid}, codebook_size={self.codebook_size}, classes={self.num_classes})"
