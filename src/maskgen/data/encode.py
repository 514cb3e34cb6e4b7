"""``encode_dataset``: write a token or latent cache (see :mod:`.cache`) for a tokenizer.

The cache is built inside a scratch folder beside the target, ``.NAME.encoding/cache``, and
renamed into place whole, so a killed run never leaves a folder that looks like a complete
cache. The run holds the scratch folder's lock (:mod:`maskgen.folder_lock`) throughout, so two
encodes of one target never interleave and the scratch folder has one owner. A run killed too
hard to clean up (SIGKILL, power loss) leaves the scratch folder behind; the next ``encode``
of the same target empties it when it takes the lock, and removes it when done.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..checkpoint import save_json
from ..errors import MaskgenError
from ..folder_lock import LOCK_NAME, folder_lock
from .cache import ARRAY_FILES, is_token_cache
from .latents import LatentDataset
from .tokens import TokenDataset


def scratch_folder(out: Path) -> Path:
    """The fixed hidden folder beside ``out`` in which an encode of ``out`` works."""
    return out.parent / f".{out.name}.encoding"


def remove_stale_scratch(out: Path) -> list[Path]:
    """Delete what a killed encode of ``out`` left: the scratch folder's contents (its lock
    aside), and the randomly named ``.NAME.tmp-*`` / ``.NAME.old-*`` folders of earlier
    versions beside ``out``. Only under the scratch folder's lock: no live encode owns them then."""
    scratch = scratch_folder(out)
    stale = [p for p in scratch.iterdir() if p.name != LOCK_NAME] if scratch.is_dir() else []
    stale += [p for pattern in (f".{out.name}.tmp-*", f".{out.name}.old-*") for p in out.parent.glob(pattern) if p.is_dir()]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    return stale


def _reusable(out: Path) -> bool:
    """An existing cache or an empty folder may be replaced."""
    return out.is_dir() and (is_token_cache(out) or not any(out.iterdir()))


def _batches(dataset: Dataset, batch_size: int, num_workers: int):
    """Yield (images, labels) batches in dataset order."""
    if num_workers == 0 and hasattr(dataset, "batch"):
        # in-memory datasets slice far faster than collating single items
        n = len(dataset)
        for start in range(0, n, batch_size):
            yield dataset.batch(torch.arange(start, min(start + batch_size, n)))
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def _replace_folder(tmp: Path, out: Path, old: Path) -> None:
    """Move ``tmp`` to ``out``; an existing cache at ``out`` is swapped out to ``old``, then deleted."""
    if not out.exists():
        os.replace(tmp, out)
        return
    os.replace(out, old)
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
    """Encode every image of ``dataset`` with ``tokenizer.encode`` into a cache at ``out``.

    A tokenizer with ``token_dim`` (a KL tokenizer: ``encode(uint8 [B,C,H,W]) -> float
    [B, h*w, d]``, posterior means, scaled) gives a latent cache; any other
    (``encode(...) -> LongTensor [B,h,w]`` and ``codebook_size``) a token cache.
    ``tokenizer.sha256`` (optional) is recorded in meta.json. The array streams into a
    memory-mapped file, so memory use does not grow with N. An existing cache (or empty
    folder) at ``out`` is replaced; any other existing path is refused. Returns ``out``.
    """
    out = Path(out).expanduser()
    if out.exists() and not _reusable(out):
        raise MaskgenError(f"refusing to overwrite {out}: it exists and is not a token or latent cache")
    kind = LatentDataset if hasattr(tokenizer, "token_dim") else TokenDataset
    dtype, tail, meta = kind.layout(tokenizer)
    n = len(dataset)
    if n == 0:
        raise MaskgenError("cannot encode an empty dataset")
    if batch_size < 1:
        raise MaskgenError(f"batch_size must be positive, got {batch_size}")
    class_names = [str(c) for c in getattr(dataset, "class_names", [])]
    scratch = scratch_folder(out)
    with folder_lock(scratch, scratch=True):
        remove_stale_scratch(out)
        tmp, old = scratch / "cache", scratch / "replaced"
        tmp.mkdir()
        try:
            _write(tokenizer, dataset, tmp, kind, dtype, tail, meta, batch_size, device, num_workers)
            save_json(tmp / "meta.json", {**meta, "kind": kind.kind, "num_classes": len(class_names), "class_names": class_names,
                                          "count": n, "dtype": dtype.name, "tokenizer_sha256": getattr(tokenizer, "sha256", None)})
            if out.exists() and not _reusable(out):  # filled by someone else meanwhile
                raise MaskgenError(f"refusing to overwrite {out}: it exists and is not a token or latent cache")
            _replace_folder(tmp, out, old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _write(tokenizer: Any, dataset: Dataset, tmp: Path, kind: type, dtype: np.dtype, tail: tuple[int, ...],
           meta: dict[str, Any], batch_size: int, device: str | torch.device, num_workers: int) -> None:
    """Stream the encoded array and the labels into ``tmp``; sets ``meta["grid"]``."""
    n = len(dataset)
    # eval mode so dropout/batch-norm cannot change the output; restored afterwards
    was_training = isinstance(tokenizer, torch.nn.Module) and tokenizer.training
    if was_training:
        tokenizer.eval()
    try:
        labels = np.empty(n, dtype=np.int64)
        array = None
        pos = 0
        with torch.no_grad(), tqdm(total=n, unit="img", desc=f"encoding {kind.kind}", disable=None) as bar:
            for images, batch_labels in _batches(dataset, batch_size, num_workers):
                encoded = tokenizer.encode(images.to(device))
                if encoded.shape[0] != images.shape[0]:
                    raise MaskgenError(f"tokenizer.encode returned {encoded.shape[0]} items for {images.shape[0]} images")
                items = kind.stored(encoded, meta)
                grid = [int(items.shape[1]), int(items.shape[2])]
                if array is None:
                    meta["grid"] = meta.get("grid", grid)
                    array = np.lib.format.open_memmap(tmp / ARRAY_FILES[kind.kind], mode="w+", dtype=dtype, shape=(n, *grid, *tail))
                if grid != list(meta["grid"]):
                    raise MaskgenError(f"tokenizer grid changed from {meta['grid']} to {grid}")
                b = items.shape[0]
                if pos + b > n:
                    raise MaskgenError(f"dataset yielded more than its length {n}")
                array[pos : pos + b] = items.numpy().astype(dtype)
                labels[pos : pos + b] = torch.as_tensor(batch_labels).reshape(-1).cpu().numpy()
                pos += b
                bar.update(b)
        if pos != n:
            raise MaskgenError(f"dataset yielded {pos} images, expected {n}")
        array.flush()
        del array  # close the memmap before the folder moves
        np.save(tmp / "labels.npy", labels)
    finally:
        if was_training:
            tokenizer.train()
