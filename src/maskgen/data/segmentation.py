"""Images paired with segmentation maps: the second modality of joint image+segmentation
modelling (Discrete Interpolants, Hu & Ommer 2025, Sec. 3.4 "Segmentation is Unmasking").

``--data SPEC`` forms:

==============================  ===============================================================
``mosaic[:N]``                  N (default 8000) deterministic Fashion-MNIST mosaics, train split
``mosaic-test[:N]``             N (default 1000) held-out mosaics (other source items, other seed)
``images:DIR,labels:DIR``       an image folder and a parallel folder of label PNGs (same stems)
==============================  ===============================================================

The mosaic needs no download: each 32x32 grey image holds 2 or 3 items of the bundled
Fashion-MNIST subset, each shrunk to 16x16 (2x2 average) and placed at a random position
(later items in front); its map labels every pixel an item covers with the item's class + 1
and the background 0, so 11 labels. Getting the map from the image needs each item to be
recognised, not just found. Train mosaics draw their items from the subset's items with
index % 10 != 9, held-out ones from the rest, with a different seed.

Why 32x32 and not 64x64: the image tokens then come from the shipped 32x32 VQ tokenizer
(8x8 grid), and the joint sequence is 64 + 64 tokens. At 64x64 it would be 256 + 256 tokens,
about 4x the attention rows and over 10x the cost per step, which does not fit the
20-30 CPU-minute training budget of a recipe on one thread.

A label PNG holds one integer class per pixel: mode L, P (a palette PNG; maskgen writes its
segmentations so, a colour picture whose pixel values are the labels) or I.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..errors import MaskgenError
from .images import IMAGE_EXTENSIONS, load_image

MOSAIC_SIZE = 32
ITEM_SIZE = 16
MOSAIC_SEEDS = {"train": 20250, "test": 90125}
MOSAIC_DEFAULT_NUM = {"train": 8000, "test": 1000}
FOREGROUND = 32  # a shrunk item's pixel at or above this grey level is the item's, below is background
BACKGROUND_NAME = "background"
LABEL_MODES = ("L", "P", "I", "I;16")


class SegmentationDataset(Dataset):
    """Images uint8 [N, C, S, S] with label maps int64 [N, S, S] (0..num_labels - 1).

    ``__getitem__(i) -> (image, map)``; ``batch(indices) -> (images, maps)``; ``label_names``
    names the labels; ``label`` [N] is the image's main class (its largest item's label, the
    background if none), what an image classifier can be trained on."""

    def __init__(self, images: torch.Tensor, maps: torch.Tensor, label_names: list[str]):
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise MaskgenError(f"images must be uint8 [N,C,H,W], got {images.dtype} {tuple(images.shape)}")
        if maps.shape != (images.shape[0], *images.shape[2:]):
            raise MaskgenError(f"label maps {tuple(maps.shape)} do not match images {tuple(images.shape)}")
        self.images, self.maps = images.contiguous(), maps.long().contiguous()
        self.label_names = list(label_names)
        if self.maps.numel() and (int(self.maps.min()) < 0 or int(self.maps.max()) >= len(self.label_names)):
            raise MaskgenError(f"label maps hold values outside 0..{len(self.label_names) - 1}")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.maps[i]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return self.images[indices], self.maps[indices]

    def main_labels(self) -> torch.Tensor:
        """[N]: the most frequent non-background label of each map (0 if there is none)."""
        counts = F.one_hot(self.maps.flatten(1), self.num_labels).sum(1)
        counts[:, 0] = 0
        return torch.where(counts.sum(1) > 0, counts.argmax(1), 0)


def make_mosaics(num: int, split: str = "train") -> SegmentationDataset:
    """``num`` Fashion-MNIST mosaics of ``split`` (see the module docstring); the same
    ``num`` and split always give the same images and maps."""
    from .embedded import load_embedded

    if split not in MOSAIC_SEEDS:
        raise MaskgenError(f"unknown split {split!r}; expected 'train' or 'test'")
    source = load_embedded(32, 1)
    held_out = torch.arange(len(source)) % 10 == 9
    pool = torch.nonzero(held_out if split == "test" else ~held_out).squeeze(1)
    # 2x2 average of the padded 32x32 item: the 28x28 item becomes 14x14 inside a 16x16 tile
    items = F.avg_pool2d(source.images[pool].float(), 2).round().to(torch.uint8)[:, 0]
    classes = source.labels[pool]
    g = torch.Generator().manual_seed(MOSAIC_SEEDS[split])
    images = torch.zeros(num, MOSAIC_SIZE, MOSAIC_SIZE, dtype=torch.uint8)
    maps = torch.zeros(num, MOSAIC_SIZE, MOSAIC_SIZE, dtype=torch.long)
    counts = torch.randint(2, 4, (num,), generator=g)
    picks = torch.randint(len(pool), (num, 3), generator=g)
    corners = torch.randint(MOSAIC_SIZE - ITEM_SIZE + 1, (num, 3, 2), generator=g)
    for i in range(num):
        for j in range(int(counts[i])):
            r, c = corners[i, j].tolist()
            tile = items[picks[i, j]]
            fg = tile >= FOREGROUND
            window = (slice(r, r + ITEM_SIZE), slice(c, c + ITEM_SIZE))
            images[i][window] = torch.where(fg, tile, images[i][window])
            maps[i][window] = torch.where(fg, classes[picks[i, j]] + 1, maps[i][window])
    return SegmentationDataset(images[:, None], maps, [BACKGROUND_NAME, *source.class_names])


def read_label_map(path: Path, size: int | None = None) -> np.ndarray:
    """One label PNG as int64 [H, W] (nearest-neighbour resized to ``size`` when given)."""
    try:
        with Image.open(path) as img:
            if img.mode not in LABEL_MODES:
                raise MaskgenError(f"label map {path} is a {img.mode} image; label PNGs hold one integer per pixel (mode L, P or I)")
            if size is not None and img.size != (size, size):
                w, h = img.size
                side = min(w, h)
                box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
                img = img.resize((size, size), Image.NEAREST, box=box)
            return np.asarray(img).astype(np.int64)
    except (OSError, ValueError, SyntaxError) as e:
        raise MaskgenError(f"cannot decode label map {path}: {e}") from None


def _files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise MaskgenError(f"{what} folder does not exist: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."))
    if not files:
        raise MaskgenError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {what} folder {folder}")
    return files


def read_label_folder(folder: str | Path, size: int) -> tuple[list[str], torch.Tensor]:
    """(file stems, maps int64 [N, size, size]) of every label PNG in ``folder``."""
    files = _files(Path(folder).expanduser(), "label")
    return [f.stem for f in files], torch.from_numpy(np.stack([read_label_map(f, size) for f in files]))


def read_image_folder(folder: str | Path, size: int, channels: int) -> tuple[list[str], torch.Tensor]:
    """(file stems, images uint8 [N, channels, size, size]) of every image in ``folder``."""
    files = _files(Path(folder).expanduser(), "image")
    return [f.stem for f in files], torch.stack([load_image(f, size, channels) for f in files])


def load_pair_folders(images: str | Path, labels: str | Path, image_size: int, channels: int, num_labels: int | None = None) -> SegmentationDataset:
    """An image folder and its label folder, paired by file stem; ``num_labels`` defaults to
    the largest label found + 1."""
    stems, maps = read_label_folder(labels, image_size)
    by_stem = {p.stem: p for p in _files(Path(images).expanduser(), "image")}
    missing = [s for s in stems if s not in by_stem]
    if missing:
        raise MaskgenError(f"label map {missing[0]} in {labels} has no image of the same name in {images}")
    pictures = torch.stack([load_image(by_stem[s], image_size, channels) for s in stems])
    k = int(maps.max()) + 1 if num_labels is None else num_labels
    if int(maps.max()) >= k:
        raise MaskgenError(f"label maps in {labels} hold label {int(maps.max())}; only 0..{k - 1} exist")
    return SegmentationDataset(pictures, maps, [str(i) for i in range(k)])


def is_segmentation_spec(spec: str) -> bool:
    """Whether ``spec`` names paired image + segmentation data."""
    spec = spec.strip()
    return spec in ("mosaic", "mosaic-test") or spec.startswith(("mosaic:", "mosaic-test:", "images:"))


def _count(text: str, spec: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise MaskgenError(f"bad data spec {spec!r}: N in mosaic:N must be an integer") from None
    if n < 1:
        raise MaskgenError(f"bad data spec {spec!r}: N must be >= 1")
    return n


def open_segmentation(spec: str, image_size: int = 32, channels: int = 1, split: str = "train") -> SegmentationDataset:
    """The paired data ``spec`` names (module docstring); ``split`` 'test' turns ``mosaic``
    into ``mosaic-test``."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind in ("mosaic", "mosaic-test"):
        split = "test" if kind == "mosaic-test" else split
        num = _count(rest, spec) if rest else MOSAIC_DEFAULT_NUM.get(split, 0)
        if image_size != MOSAIC_SIZE:
            raise MaskgenError(f"the mosaic is {MOSAIC_SIZE}x{MOSAIC_SIZE}; image size {image_size} was asked for")
        data = make_mosaics(num, split)
        if channels != 1:
            data.images = data.images.expand(-1, channels, -1, -1).contiguous()
        return data
    if kind == "images":
        parts = dict(p.partition(":")[::2] for p in spec.split(","))
        if set(parts) != {"images", "labels"} or not all(parts.values()):
            raise MaskgenError(f"bad data spec {spec!r}; expected images:DIR,labels:DIR")
        return load_pair_folders(parts["images"], parts["labels"], image_size, channels)
    raise MaskgenError(f"unknown segmentation data spec {spec!r}; expected mosaic[:N], mosaic-test[:N] or images:DIR,labels:DIR")
