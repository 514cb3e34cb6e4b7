"""What a dataset is, as one string: the identity ``--resume`` and the verbs that read a
model's training data compare, never its path (a moved folder is the same data; another cache
under the same name, or a cache re-encoded in place, is not).

``fingerprint(dataset)`` is the sha256 of the dataset's kind, its number of items, its
stored views, its class names, every label, the names of an image folder's files (relative to
its root) and the bytes of ``SAMPLES`` items spread evenly over it, the first and the last
included. It reads those items only, so an ImageNet cache or folder is fingerprinted in well
under a second; a change that touches no label, no file name and none of the sampled items (one
image edited in place) goes unseen. Another dataset, split, size, class set, image size,
channel count or tokenizer's cache does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLES = 64


def _bytes(value: Any) -> bytes:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(np.asarray(value))
    return f"{array.dtype.str}{array.shape}".encode() + array.tobytes()


def fingerprint(dataset: Any, samples: int = SAMPLES) -> str:
    """The content identity of ``dataset`` (any dataset maskgen opens: images, an image folder,
    a token or latent cache, in memory or memory-mapped), as 64 hex digits."""
    h = hashlib.sha256()
    n = len(dataset)
    h.update(f"{type(dataset).__name__}|{n}|views {getattr(dataset, 'views', 1)}|".encode())
    h.update("\x00".join(str(c) for c in getattr(dataset, "class_names", [])).encode() + b"|")
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        h.update(_bytes(labels))
    files = getattr(dataset, "files", None)
    root = getattr(dataset, "root", None)
    if files is not None:
        names = (str(Path(f).relative_to(root)) if root is not None else Path(f).name for f in files)
        h.update("\x00".join(names).encode())
    picks = sorted({round(i * (n - 1) / max(1, samples - 1)) for i in range(min(samples, n))}) if n else []
    for i in picks:
        item = dataset[i]
        for part in item if isinstance(item, tuple) else (item,):
            h.update(_bytes(part))
    return h.hexdigest()
