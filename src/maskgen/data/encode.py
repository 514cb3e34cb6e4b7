"""``encode_dataset``: write a token or latent cache (see :mod:`.cache`) for a tokenizer,
optionally with both horizontal flips of every image (MAR, Li et al. 2024, caches ImageNet so),
reading and decoding in DataLoader workers, resumably.

Scratch. The cache is built inside a scratch folder beside the target, ``.NAME.encoding/cache``,
and renamed into place whole, so a killed run never leaves a folder that looks like a complete
cache. The run holds the scratch folder's lock (:mod:`maskgen.folder_lock`) throughout, so two
encodes of one target never interleave and the scratch folder has one owner.

Resume. The arrays are preallocated at their final size as memory-mapped ``.npy`` files and
filled in dataset order, in chunks of whole batches; after each chunk they are flushed, then
``progress.json`` records the images done (:mod:`.encode_progress`). A run that stops after a
chunk (killed, interrupted, or failed on a bad image) leaves its scratch folder; the next
encode of the same target with the same arguments continues after the last recorded chunk,
and since every batch holds the images it would have held in one uninterrupted run, the
cache comes out byte-identical to that run's (given a deterministic tokenizer: on a GPU,
deterministic convolution algorithms; either way every row is its image's encoding). With other arguments it is refused while
images are recorded (``restart=True`` discards them). Anything else in the scratch folder (a
partial cache with nothing recorded, one a run that cannot be identified left, the
``.NAME.tmp-*``/``.NAME.old-*`` folders of earlier versions) is deleted by the next run
under the lock, as before resume existed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from ..progress import progress as progress_bar

from ..checkpoint import save_json
from ..errors import MaskgenError
from ..folder_lock import LOCK_NAME, folder_lock, remove_stale_temporaries
from .cache import ARRAY_FILES, is_token_cache
from .encode_progress import PROGRESS_FILE, open_partial, record_progress, resume_point, run_identity
from .images import ImageFolderDataset, load_image
from .latents import LatentDataset
from .tokens import TokenDataset

CHUNK_SIZE = 8192
"""Images between two flushes of the arrays and ``progress.json`` (rounded up to whole batches)."""


def scratch_folder(out: Path) -> Path:
    """The fixed hidden folder beside ``out`` in which an encode of ``out`` works."""
    return out.parent / f".{out.name}.encoding"


def remove_stale_scratch(out: Path, keep: tuple[str, ...] = ()) -> list[Path]:
    """Delete what a killed encode of ``out`` left: the scratch folder's contents (its lock and
    ``keep`` aside), and the randomly named ``.NAME.tmp-*`` / ``.NAME.old-*`` folders of earlier
    versions beside ``out``. Only under the scratch folder's lock: no live encode owns them then."""
    scratch = scratch_folder(out)
    stale = [p for p in scratch.iterdir() if p.name not in (LOCK_NAME, *keep)] if scratch.is_dir() else []
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


class _Decoded(Dataset):
    """``dataset[i]`` as ``(image, label, "")``, or ``(None, None, message)`` when it cannot be
    decoded: a MaskgenError raised in a loader worker would reach the main process wrapped
    in a many-line traceback, and a bad file is to be named in one line."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any, str]:
        try:
            image, label = self.dataset[i]
        except MaskgenError as e:
            return None, None, str(e)
        return image, label, ""


class _FolderFiles(Dataset):
    """An :class:`ImageFolderDataset` as its loader workers read it: the paths in one numpy
    byte array instead of a list of a million ``Path`` objects, which every forked worker
    would copy page by page as it touched them (reference counts and the garbage collector
    write to the objects), so that each worker ends up with a private copy of the list."""

    def __init__(self, folder: ImageFolderDataset) -> None:
        self.paths = np.array([os.fsencode(p) for p in folder.files])
        self.labels = folder.labels.numpy()
        self.image_size, self.channels = folder.image_size, folder.channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return load_image(os.fsdecode(self.paths[i]), self.image_size, self.channels), torch.tensor(self.labels[i])


def _collate(items: list[tuple[Any, Any, str]]) -> tuple[Any, Any, str]:
    errors = [e for _, _, e in items if e]
    if errors:
        return None, None, errors[0]
    images, labels = default_collate([(x, y) for x, y, _ in items])
    return images, labels, ""


def _die_with_parent(worker_id: int) -> None:
    """Loader worker start-up (Linux): die with the encode. A forked worker shares the
    encode's lock (:mod:`maskgen.folder_lock`), and after a ``kill -9`` of the encode alone
    it would otherwise hold it, refusing the resume, until its own check notices (seconds)."""
    if sys.platform != "linux":
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _batches(dataset: Dataset, batch_size: int, num_workers: int, start: int, pin: bool) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield (images, labels) batches in dataset order from item ``start`` (a batch boundary)."""
    n = len(dataset)
    if num_workers == 0 and hasattr(dataset, "batch"):
        # in-memory datasets slice far faster than collating single items
        for s in range(start, n, batch_size):
            yield dataset.batch(torch.arange(s, min(s + batch_size, n)))
        return
    if num_workers and isinstance(dataset, ImageFolderDataset):
        dataset = _FolderFiles(dataset)
    loader = DataLoader(_Decoded(dataset), batch_size=batch_size, sampler=range(start, n), num_workers=num_workers,
                        collate_fn=_collate, pin_memory=pin, worker_init_fn=_die_with_parent if num_workers else None)
    for images, labels, error in loader:
        if error:
            raise MaskgenError(error)
        yield images, labels


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
    flips: bool = False,
    restart: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> Path:
    """Encode every image of ``dataset`` with ``tokenizer.encode`` into a cache at ``out``.

    A tokenizer with ``token_dim`` (a KL tokenizer: ``encode(uint8 [B,C,H,W]) -> float
    [B, h*w, d]``, posterior means, scaled) gives a latent cache; any other
    (``encode(...) -> LongTensor [B,h,w]`` and ``codebook_size``) a token cache.
    ``tokenizer.sha256`` (optional) is recorded in meta.json. ``flips`` also encodes every
    image's mirror image (a views axis: [N, 2, h, w, ...]), each view in a batch of its own.
    ``num_workers`` > 0 reads and decodes in that many DataLoader workers; the tokenizer runs
    here, on ``device``. The arrays stream into memory-mapped files, so memory use does not
    grow with N. A stopped run resumes (see the module docstring); ``restart`` discards one
    instead. An existing cache (or empty folder) at ``out`` is replaced; any other existing
    path is refused. Returns ``out``.
    """
    out = Path(out).expanduser()
    if out.exists() and not _reusable(out):
        raise MaskgenError(f"refusing to overwrite {out}: it exists and is not a token or latent cache")
    kind = LatentDataset if hasattr(tokenizer, "token_dim") else TokenDataset
    dtype, tail, meta = kind.layout(tokenizer)
    n = len(dataset)
    if n == 0:
        raise MaskgenError("cannot encode an empty dataset")
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if value < 1:
            raise MaskgenError(f"{name} must be positive, got {value}")
    if num_workers < 0:
        raise MaskgenError(f"num_workers must be 0 or more, got {num_workers}")
    device = torch.device(device)
    class_names = [str(c) for c in getattr(dataset, "class_names", [])]
    sha = getattr(tokenizer, "sha256", None)
    identity = run_identity(sha, dataset, {"format": meta["format"], "kind": kind.kind, "dtype": dtype.name, "count": n,
                                           "batch_size": batch_size, "flips": bool(flips), "device": device.type})
    scratch = scratch_folder(out)
    with folder_lock(scratch, scratch=True):
        tmp, old = scratch / "cache", scratch / "replaced"
        progress = resume_point(tmp, identity, restart, out)
        remove_stale_scratch(out, keep=("cache",) if progress else ())
        if progress:
            remove_stale_temporaries(tmp)
        else:
            tmp.mkdir()
        try:
            chunk = -(-chunk_size // batch_size) * batch_size
            _write(tokenizer, dataset, tmp, kind, dtype, tail, meta, batch_size, device, num_workers, flips, identity, progress, chunk)
            save_json(tmp / "meta.json", {**meta, "kind": kind.kind, "num_classes": len(class_names), "class_names": class_names,
                                          "count": n, "views": 2 if flips else 1, "dtype": dtype.name, "tokenizer_sha256": sha})
            if out.exists() and not _reusable(out):  # filled by someone else meanwhile
                raise MaskgenError(f"refusing to overwrite {out}: it exists and is not a token or latent cache")
            (tmp / PROGRESS_FILE).unlink(missing_ok=True)
            _replace_folder(tmp, out, old)
        except BaseException:
            if not (tmp / PROGRESS_FILE).is_file():  # nothing a rerun could continue from
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def _write(tokenizer: Any, dataset: Dataset, tmp: Path, kind: type, dtype: np.dtype, tail: tuple[int, ...],
           meta: dict[str, Any], batch_size: int, device: torch.device, num_workers: int, flips: bool,
           identity: dict[str, Any] | None, progress: dict[str, Any] | None, chunk: int) -> None:
    """Stream the encoded array and the labels into ``tmp`` from where ``progress`` left off;
    sets ``meta["grid"]``. Records progress after every ``chunk`` images when ``identity``."""
    n = len(dataset)
    views = (2,) if flips else ()
    arrays = None
    done = 0
    if progress:
        meta["grid"] = list(progress["grid"])
        arrays = (open_partial(tmp / ARRAY_FILES[kind.kind], dtype, (n, *views, *meta["grid"], *tail)),
                  open_partial(tmp / "labels.npy", np.dtype(np.int64), (n,)))
        if any(a is None for a in arrays):
            raise MaskgenError(f"the interrupted encode in {tmp} has damaged arrays; pass --restart to discard it")
        done = int(progress["done"])
    # eval mode so dropout/batch-norm cannot change the output; restored afterwards
    was_training = isinstance(tokenizer, torch.nn.Module) and tokenizer.training
    if was_training:
        tokenizer.eval()
    try:
        pos = done
        with torch.no_grad(), progress_bar(total=n, initial=done, unit="img", desc=f"encoding {kind.kind}") as bar:
            for images, batch_labels in _batches(dataset, batch_size, num_workers, done, device.type == "cuda"):
                images = images.to(device)
                encoded = [_encode(tokenizer, x, kind, meta) for x in ((images, images.flip(-1)) if flips else (images,))]
                items = torch.stack(encoded, 1) if flips else encoded[0]
                grid = [int(items.shape[1 + len(views)]), int(items.shape[2 + len(views)])]
                if arrays is None:
                    meta["grid"] = meta.get("grid", grid)
                    arrays = (np.lib.format.open_memmap(tmp / ARRAY_FILES[kind.kind], mode="w+", dtype=dtype, shape=(n, *views, *grid, *tail)),
                              np.lib.format.open_memmap(tmp / "labels.npy", mode="w+", dtype=np.int64, shape=(n,)))
                if grid != list(meta["grid"]):
                    raise MaskgenError(f"tokenizer grid changed from {meta['grid']} to {grid}")
                b = items.shape[0]
                if pos + b > n:
                    raise MaskgenError(f"dataset yielded more than its length {n}")
                arrays[0][pos : pos + b] = items.numpy().astype(dtype)
                arrays[1][pos : pos + b] = torch.as_tensor(batch_labels).reshape(-1).cpu().numpy()
                pos += b
                bar.update(b)
                if identity is not None and (pos % chunk == 0 or pos == n):
                    for a in arrays:
                        a.flush()
                    record_progress(tmp, identity, list(meta["grid"]), pos)
                    done = pos
        if pos != n:
            raise MaskgenError(f"dataset yielded {pos} images, expected {n}")
        for a in arrays:
            a.flush()
    except MaskgenError as e:
        if done:
            raise MaskgenError(f"{e} ({done} of {n} images are encoded and kept: the same command resumes after them)") from None
        raise
    finally:
        del arrays  # close the memory maps before the folder moves
        if was_training:
            tokenizer.train()


def _encode(tokenizer: Any, images: torch.Tensor, kind: type, meta: dict[str, Any]) -> torch.Tensor:
    """One view of a batch, encoded and checked: [B, h, w, *tail] on the CPU."""
    encoded = tokenizer.encode(images)
    if encoded.shape[0] != images.shape[0]:
        raise MaskgenError(f"tokenizer.encode returned {encoded.shape[0]} items for {images.shape[0]} images")
    return kind.stored(encoded, meta)
