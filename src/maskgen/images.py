"""Looking at images: PNG grids of uint8 samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def make_grid(images: Tensor | np.ndarray, nrow: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """Tile uint8 images [B, C, H, W] into one HxWxC (or HxW) array, ``nrow`` images per row."""
    images = torch.as_tensor(images)
    b, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    rows = math.ceil(b / nrow)
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255 if c == 1 else 0, dtype=torch.uint8)
    for i in range(b):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = images[i]
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    arr = grid.permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def save_grid(path: str | Path, images: Tensor | np.ndarray, nrow: int | None = None, scale: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_grid(images, nrow=nrow, scale=scale)).save(path)
    return path


def class_grid_order(labels: Tensor, num_classes: int) -> tuple[Tensor, int]:
    """Order images so each grid row holds one class; returns (order, images per row)."""
    labels = torch.as_tensor(labels)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per_class = [p for p in per_class if len(p)]
    width = max(len(p) for p in per_class)
    if any(len(p) != width for p in per_class):
        return torch.arange(len(labels)), int(math.ceil(math.sqrt(len(labels))))
    return torch.cat(per_class), width
