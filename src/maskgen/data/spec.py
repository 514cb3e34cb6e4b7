"""``--data SPEC``: one string names every dataset maskgen can read.

=========================  ===================================================
``embedded`` (default)     bundled Fashion-MNIST subset (10 classes, 28x28 grey)
``fashion-mnist[:DIR]``    IDX files (default DIR /usr/share/datasets/fashion-mnist)
``folder:DIR``             one subfolder of images per class (ImageNet layout)
``tokens:DIR``             a token or latent cache written by ``encode_dataset``
``mosaic[:N]`` ...         paired image + segmentation data (``segmentation.py``): its images
``DIR``                    whichever of the above the folder's contents show
=========================  ===================================================

Image datasets come back as uint8 [N,C,S,S] with ``S = image_size``; 28x28 sources are
zero-padded to 32.  ``channels=None`` keeps the source's own (1 for Fashion-MNIST, 3 for
folders).  A cache gives a ``TokenDataset`` (VQ codes) or a ``LatentDataset`` (KL latents),
whichever its meta.json names.  ``split`` picks 'train' or 'test' (t10k) IDX files; a folder or token cache
already is one split, so ``split`` does not apply to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..errors import MaskgenError
from .idx import read_idx
from .embedded import load_embedded
from .images import ImageDataset, ImageFolderDataset, image_dataset
from .cache import CacheDataset, cache_kind, is_token_cache
from .latents import LatentDataset
from .segmentation import is_segmentation_spec, open_segmentation
from .tokens import TokenDataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_EXPECTED = "expected embedded, fashion-mnist[:DIR], folder:DIR, tokens:DIR"
_SPLITS = {"train": "train", "test": "t10k"}


def _idx_file(folder: Path, prefix: str, kind: str) -> Path | None:
    """``{prefix}-{kind}-idxN-ubyte[.gz]``, also with the dot spelling of some mirrors."""
    ndim = 3 if kind == "images" else 1
    for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _has_idx(folder: Path) -> bool:
    return _idx_file(folder, "train", "images") is not None


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise MaskgenError(f"unknown split {split!r}; expected 'train' or 'test'")
    return split


def fit_to_square(images: np.ndarray) -> np.ndarray:
    """Center-crop [N,H,W] images to a square."""
    h, w = images.shape[1:3]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[:, top : top + s, left : left + s]


def load_idx_dataset(folder: str | Path, split: str = "train", image_size: int = 32, channels: int | None = None,
                     class_names: list[str] | None = None) -> ImageDataset:
    """Images and labels from ``{train,t10k}-{images,labels}`` IDX files in ``folder``."""
    folder = Path(folder).expanduser()
    prefix = _SPLITS[_check_split(split)]
    if not folder.is_dir():
        raise MaskgenError(f"data path does not exist: {folder}")
    img_path, lbl_path = _idx_file(folder, prefix, "images"), _idx_file(folder, prefix, "labels")
    if img_path is None or lbl_path is None:
        raise MaskgenError(f"missing {prefix}-images-idx3-ubyte[.gz] or {prefix}-labels-idx1-ubyte[.gz] in {folder}")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise MaskgenError(f"{img_path} holds {images.dtype} {images.shape}, expected uint8 [N,H,W]")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise MaskgenError(f"{lbl_path} holds {labels.shape} labels for {images.shape[0]} images")
    if images.shape[1] != images.shape[2]:
        images = fit_to_square(images)
    if class_names is None:
        class_names = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
    if labels.size and int(labels.max()) >= len(class_names):
        raise MaskgenError(f"{lbl_path} has label {int(labels.max())} but only {len(class_names)} classes")
    return image_dataset(images, labels, class_names, image_size, channels)


def _existing_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise MaskgenError(f"data path does not exist: {text}")
    if not path.is_dir():
        raise MaskgenError(f"data path is not a folder: {text}")
    return path


def open_images(spec: str, what: str, **options) -> Dataset:
    """``open_dataset(spec, **options)`` for a verb that reads images (``what`` names it in
    the error): a token or latent cache is refused in one line, not met later as a missing
    attribute of the cache."""
    if is_token_spec(spec):
        raise MaskgenError(f"{what} reads images, but --data {spec} is a token or latent cache (from maskgen encode); give image data, e.g. embedded or folder:DIR")
    return open_dataset(spec, **options)


def open_cache(folder: str | Path) -> CacheDataset:
    """The cache in ``folder``: a ``TokenDataset`` or a ``LatentDataset``, by what it holds."""
    folder = Path(folder).expanduser()
    return LatentDataset(folder) if cache_kind(folder) == "latents" else TokenDataset(folder)


def is_token_spec(spec: str) -> bool:
    """True when ``spec`` names a token or latent cache (``tokens:DIR`` or a folder holding one)."""
    spec = spec.strip()
    kind, sep, _ = spec.partition(":")
    if sep and kind == "tokens":
        return True
    if spec in ("", "embedded", "fashion-mnist") or (sep and kind in ("folder", "fashion-mnist")):
        return False
    return is_token_cache(Path(spec).expanduser())


PATH_PREFIXES = ("fashion-mnist", "folder", "tokens", "images")  # SPEC:DIR forms; mosaic:N is a count


def absolute_spec(spec: str) -> str:
    """``spec`` with its folder made absolute (``tokens:cache`` -> ``tokens:/work/cache``), as a
    model folder records its training data, so a later verb finds the same data from any
    working directory; specs without a folder (``embedded``, ``mosaic:N``) stay as they are."""
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if sep and kind in PATH_PREFIXES and rest:
        return f"{kind}:{Path(rest).expanduser().resolve()}"
    if not sep and spec not in ("", "embedded", "fashion-mnist", "mosaic", "mosaic-test") and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def open_dataset(spec: str = "embedded", image_size: int = 32, channels: int | None = None, split: str = "train",
                 check_files: bool = True) -> Dataset:
    """Open the dataset named by ``spec`` (see the module docstring for the forms).

    Image specs give an ``ImageDataset``/``ImageFolderDataset`` at ``image_size`` with
    ``channels`` (None: the source's own); cache specs give a ``TokenDataset`` or ``LatentDataset``.
    ``check_files=False`` skips an image folder's check of every file (``ImageFolderDataset``).
    """
    _check_split(split)
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if spec == "embedded":
        if split != "train":
            raise MaskgenError("the embedded dataset has only a train split; use fashion-mnist for the test split")
        return load_embedded(image_size, channels)
    if spec == "fashion-mnist" or (sep and kind == "fashion-mnist"):
        folder = Path(rest).expanduser() if rest else FASHION_MNIST_DIR
        if not folder.is_dir():
            hint = "; install the Debian package dataset-fashion-mnist or pass fashion-mnist:DIR" if not rest else ""
            raise MaskgenError(f"data path does not exist: {folder}{hint}")
        return load_idx_dataset(folder, split, image_size, channels, FASHION_MNIST_CLASSES)
    if sep and kind == "folder":
        return ImageFolderDataset(_existing_dir(rest), image_size, 3 if channels is None else channels, check_files)
    if sep and kind == "tokens":
        return open_cache(_existing_dir(rest))
    if is_segmentation_spec(spec):  # paired data's images, labelled by their main item (data/segmentation.py)
        pairs = open_segmentation(spec, image_size, 1 if channels is None else channels, split)
        return ImageDataset(pairs.images, pairs.main_labels(), pairs.label_names)
    if not spec:
        raise MaskgenError(f"empty data spec; {_EXPECTED}")
    path = Path(spec).expanduser()
    if not path.exists():
        # a bare word or unknown prefix is a typo of a spec; anything path-like is a missing path
        if ("/" not in spec and "\\" not in spec and not spec.startswith((".", "~"))) or (sep and "/" not in kind):
            raise MaskgenError(f"unknown data spec {spec!r}; {_EXPECTED}")
        raise MaskgenError(f"data path does not exist: {spec}")
    path = _existing_dir(spec)
    if is_token_cache(path):
        return open_cache(path)
    if _has_idx(path):
        return load_idx_dataset(path, split, image_size, channels)
    return ImageFolderDataset(path, image_size, 3 if channels is None else channels, check_files)
