"""Datasets: the bundled Fashion-MNIST subset, IDX files, image folders, token and latent caches."""

from .cache import cache_kind, is_token_cache
from .encode import encode_dataset
from .identity import fingerprint
from .idx import read_idx
from .images import ImageDataset, ImageFolderDataset, fit_to_size
from .latents import LatentDataset
from .spec import absolute_spec, is_token_spec, open_cache, open_dataset, open_images
from .tokens import TokenDataset

__all__ = [
    "open_dataset",
    "open_images",
    "absolute_spec",
    "fingerprint",
    "open_cache",
    "is_token_spec",
    "is_token_cache",
    "cache_kind",
    "ImageDataset",
    "ImageFolderDataset",
    "TokenDataset",
    "LatentDataset",
    "encode_dataset",
    "read_idx",
    "fit_to_size",
]
