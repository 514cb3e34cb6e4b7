"""Image datasets: in-memory uint8 tensors, and lazily decoded class-per-folder trees.

Every dataset here returns ``(image uint8 [C,H,W], label int64 scalar)`` from
``__getitem__`` and ``(images [B,C,H,W], labels [B])`` from ``batch(indices)``, and
exposes ``class_names``, ``num_classes``, ``channels``, ``image_size`` and ``labels``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from ..progress import progress as progress_bar
from torch.utils.data import Dataset

from ..errors import MaskgenError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))


class ImageDataset(Dataset):
    """Images held in memory as one uint8 tensor [N,C,H,W] with int64 labels [N].

    ``images`` may also be [N,H,W] (one channel) or a numpy array; ``H`` must equal ``W``.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        labels: np.ndarray | torch.Tensor | Sequence[int],
        class_names: Sequence[str],
    ) -> None:
        images = _as_tensor(images)
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise MaskgenError(f"images must be uint8 [N,C,H,W], got {images.dtype} {tuple(images.shape)}")
        if images.shape[2] != images.shape[3]:
            raise MaskgenError(f"images must be square, got {images.shape[2]}x{images.shape[3]}")
        labels = (labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))).long().reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise MaskgenError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.class_names = [str(c) for c in class_names]
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise MaskgenError(f"labels must lie in 0..{len(self.class_names) - 1}, got {labels.min()}..{labels.max()}")
        self.images = images.contiguous()
        self.labels = labels.contiguous()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [B,C,H,W] and labels [B] at ``indices`` in one slicing operation."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        return self.images[indices], self.labels[indices]

    def __repr__(self) -> str:
        return f"ImageDataset(n={len(self)}, channels={self.channels}, size={self.image_size}, classes={self.num_classes})"


def _check_channels(channels: int) -> int:
    if channels not in (1, 3):
        raise MaskgenError(f"channels must be 1 or 3, got {channels}")
    return channels


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 [N,C,H,W] between 1 and 3 channels (grey is repeated; RGB uses ITU-R 601 luma, as PIL)."""
    _check_channels(channels)
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3:
        weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
        return ((images.to(torch.int32) * weights).sum(1, keepdim=True) + 500).div(1000, rounding_mode="floor").to(torch.uint8)
    raise MaskgenError(f"cannot convert {c}-channel images to {channels} channels")


def fit_to_size(images: torch.Tensor, image_size: int, chunk: int = 1024) -> torch.Tensor:
    """Bring square uint8 images [N,C,H,W] to [N,C,S,S].

    28 -> 32 zero-pads 2 pixels each side, which keeps every Fashion-MNIST/MNIST pixel
    exact (their background is 0); any other change is a bicubic (antialiased) resize.
    """
    if image_size < 1:
        raise MaskgenError(f"image_size must be positive, got {image_size}")
    size = images.shape[-1]
    if images.shape[-2] != size:
        raise MaskgenError(f"fit_to_size needs square images, got {tuple(images.shape[-2:])}")
    if size == image_size:
        return images
    if size == 28 and image_size == 32:
        return F.pad(images, (2, 2, 2, 2), value=0)
    out = torch.empty((*images.shape[:2], image_size, image_size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):  # chunks bound the float32 copy's memory
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
        out[start : start + chunk] = y.round().clamp_(0, 255).to(torch.uint8)
    return out


def center_crop(img: Image.Image, image_size: int) -> Image.Image:
    """ADM's center crop (Dhariwal & Nichol 2021, guided-diffusion; MAR (Li et al. 2024) caches
    ImageNet with it): halve with a box filter while the short side is at least twice the
    target, resize bicubically so the short side is ``image_size``, then cut the central
    ``image_size`` square. The halvings are ADM's own (they stand in for PIL's ``reducing_gap``)
    and are kept so that a cache sees exactly the pixels MAR's preprocessing gives."""
    while min(img.size) >= 2 * image_size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = image_size / min(img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    w, h = img.size
    left, top = (w - image_size) // 2, (h - image_size) // 2
    return img.crop((left, top, left + image_size, top + image_size))


def load_image(path: str | Path, image_size: int, channels: int) -> torch.Tensor:
    """Decode one image file, convert it to grey or RGB and :func:`center_crop` it: uint8 [C,S,S]."""
    try:
        with Image.open(path) as img:
            img = center_crop(img.convert("L" if channels == 1 else "RGB"), image_size)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MaskgenError(f"cannot decode image {path}: {e}") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


def check_image_files(files: list[Path], progress: bool = True) -> None:
    """A fast pass over every file before a run uses any (PIL's ``verify``: headers and, for
    PNG, every chunk's checksum, without decoding the pixels): a corrupt or truncated file is
    named in one line now, not when its batch is drawn hours into training."""
    for path in progress_bar(files, desc="check images", disable=not progress or len(files) < 5000, leave=False):
        try:
            with Image.open(path) as img:
                img.verify()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise MaskgenError(f"cannot decode image {path}: {e}") from None


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


class ImageFolderDataset(Dataset):
    """A folder with one subfolder per class (ImageNet layout), images decoded on access.

    Class names are the sorted subfolder names; image files are found recursively by
    extension (case-insensitive).  Each image is converted to grey (``channels=1``) or
    RGB and :func:`center_crop`-ped to ``image_size``. ``check_files`` verifies every file
    when the folder opens (:func:`check_image_files`); a reader that decodes every file
    anyway (``encode_dataset``, in its loader workers) passes False and names a bad file
    when it meets it, instead of a serial pass over a million files before it starts.
    """

    def __init__(self, root: str | Path, image_size: int = 32, channels: int = 3, check_files: bool = True) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise MaskgenError(f"data path does not exist or is not a folder: {self.root}")
        if image_size < 1:
            raise MaskgenError(f"image_size must be positive, got {image_size}")
        self._channels = _check_channels(channels)
        self._image_size = int(image_size)
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir() and _visible(p))
        if not classes:
            raise MaskgenError(f"no class subfolders in {self.root} (expected ROOT/CLASS/IMAGE files)")
        self.class_names = classes
        files: list[Path] = []
        labels: list[int] = []
        empty = []
        for label, name in enumerate(classes):
            found = sorted(
                p for p in (self.root / name).rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and _visible(p)
            )
            if not found:
                empty.append(name)
            files += found
            labels += [label] * len(found)
        if not files:
            raise MaskgenError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class subfolders of {self.root}")
        if empty:
            raise MaskgenError(f"class subfolders without images in {self.root}: {', '.join(empty[:8])}")
        self.files = files
        self.labels = torch.tensor(labels, dtype=torch.long)
        if check_files:
            check_image_files(files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def image_size(self) -> int:
        return self._image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return load_image(self.files[i], self._image_size, self._channels), self.labels[i]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode the images at ``indices``: [B,C,S,S] and labels [B]."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1).tolist()
        images = [load_image(self.files[i], self._image_size, self._channels) for i in idx]
        if not images:
            return torch.empty((0, self._channels, self._image_size, self._image_size), dtype=torch.uint8), self.labels[:0]
        return torch.stack(images), self.labels[idx]

    def __repr__(self) -> str:
        return f"ImageFolderDataset({str(self.root)!r}, n={len(self)}, channels={self.channels}, size={self.image_size}, classes={self.num_classes})"


def image_dataset(images: np.ndarray, labels: np.ndarray, class_names: list[str], image_size: int, channels: int | None) -> ImageDataset:
    """uint8 images [N,H,W] or [N,C,H,W] as an ``ImageDataset`` at ``image_size`` (and ``channels``, if given)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    # convert channels on the side with fewer pixels: resizing 3 copies of grey is wasted work
    if channels is not None and channels < x.shape[1]:
        x = to_channels(x, channels)
    x = fit_to_size(x, image_size)
    if channels is not None:
        x = to_channels(x, channels)
    return ImageDataset(x, labels.astype(np.int64), class_names)
