"""The bundled class-balanced Fashion-MNIST subset (``fashion_mnist_subset.npz``; see
LICENSE-fashion-mnist): what ``--data embedded`` reads, and the items mosaics are made of."""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..errors import MaskgenError
from .images import ImageDataset, image_dataset

EMBEDDED_FILE = "fashion_mnist_subset.npz"


def load_embedded(image_size: int = 32, channels: int | None = None) -> ImageDataset:
    """The bundled class-balanced Fashion-MNIST subset (see LICENSE-fashion-mnist)."""
    ref = resources.files("maskgen.data").joinpath(EMBEDDED_FILE)
    try:
        with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
            images, labels, names = z["images"], z["labels"], [str(c) for c in z["class_names"]]
    except (OSError, ValueError, KeyError) as e:
        raise MaskgenError(f"the bundled dataset {EMBEDDED_FILE} is missing or corrupt ({e}); reinstall maskgen") from None
    return image_dataset(images, labels, names, image_size, channels)
