"""What lets a killed ``encode`` resume: the run's identity and its count of finished images.

``encode_dataset`` keeps ``progress.json`` beside the partial arrays in its scratch folder
(see :mod:`.encode`): ``identity`` (everything that decides the bytes of the cache:
format, kind, stored dtype, tokenizer sha256, a fingerprint of the data, image count, batch
size, flips, device type) and ``done``, the images written and flushed, always a whole
number of chunks. A run with the same identity continues at ``done``; a run with another
is refused while there is work to lose, since mixing the two would give a cache that
neither run describes.

A run is resumable only when both the tokenizer (``sha256``) and the data
(:func:`data_fingerprint`) can say what they are; otherwise it has no identity and its
scratch is cleared by the next run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import save_json
from ..errors import MaskgenError
from .images import ImageDataset, ImageFolderDataset

PROGRESS_FILE = "progress.json"


def data_fingerprint(dataset: Any) -> str | None:
    """sha256 of what decides the images a dataset yields, or None when it cannot tell.

    An image folder: its class names, image size, channels and every file's path (relative
    to the root, so a moved folder still matches) and label, not the files' bytes (reading a
    million files to hash them would cost as much as encoding them); a file replaced under
    the same name is not noticed. In-memory images: their bytes and labels."""
    h = hashlib.sha256()
    if isinstance(dataset, ImageFolderDataset):
        h.update(json.dumps([dataset.class_names, dataset.image_size, dataset.channels]).encode())
        # every file was found under root, so its path starts with what root / name starts with
        # ("" for root "."); slicing strings is 10x faster than relative_to over a million files
        skip = len(str(dataset.root / "x")) - 1
        for path, label in zip(dataset.files, dataset.labels.tolist()):
            h.update(f"{str(path)[skip:]}\t{label}\n".encode())
    elif isinstance(dataset, ImageDataset):
        h.update(json.dumps(dataset.class_names).encode())
        h.update(dataset.images.numpy().tobytes())
        h.update(dataset.labels.numpy().tobytes())
    else:
        return None
    return h.hexdigest()


def run_identity(tokenizer_sha256: str | None, dataset: Any, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The identity of an encode run (``fields``: format, kind, dtype, count, batch size,
    flips, device), or None when the tokenizer or the data cannot be identified."""
    data = data_fingerprint(dataset)
    if tokenizer_sha256 is None or data is None:
        return None
    return {**fields, "tokenizer_sha256": tokenizer_sha256, "data": data}


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The fields two identities differ in, as ``name: old -> new`` (hashes by name only)."""
    parts = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            hashed = key in ("data", "tokenizer_sha256")
            parts.append(f"other {key}" if hashed else f"{key} {old.get(key)} -> {new.get(key)}")
    return ", ".join(parts)


def read_progress(cache: Path) -> dict[str, Any] | None:
    """``progress.json`` of a partial cache, or None when there is none or it is unreadable
    (a run killed before its first chunk, or by a version without resume)."""
    try:
        with open(cache / PROGRESS_FILE) as f:
            progress = json.load(f)
        int(progress["done"]), dict(progress["identity"]), list(progress["grid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return progress


def resume_point(cache: Path, identity: dict[str, Any] | None, restart: bool, out: Path) -> dict[str, Any] | None:
    """The progress record to continue from, or None to start afresh.

    Refuses, in one line, a partial cache with images done by a run of another identity
    unless ``restart``: rerunning with the same arguments would have resumed it."""
    progress = read_progress(cache) if cache.is_dir() else None
    if progress is None or restart or int(progress["done"]) == 0:
        return None
    if identity is not None and progress["identity"] == identity:
        return progress
    what = _difference(progress["identity"], identity) if identity is not None else "this run cannot be identified"
    raise MaskgenError(
        f"an interrupted encode of {out} ({progress['done']} of {progress['identity'].get('count')} images) was run with "
        f"other arguments ({what}); rerun it with the same ones to resume, or pass --restart to discard it"
    )


def open_partial(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.memmap | None:
    """A partial array to continue writing, or None unless it has exactly ``dtype`` and ``shape``."""
    try:
        array = np.lib.format.open_memmap(path, mode="r+")
    except (OSError, ValueError):
        return None
    return array if array.dtype == dtype and array.shape == shape else None


def record_progress(cache: Path, identity: dict[str, Any], grid: list[int], done: int) -> None:
    """Atomically record ``done`` finished images; call only after their arrays are flushed."""
    save_json(cache / PROGRESS_FILE, {"identity": identity, "grid": grid, "done": done})
