"""Datasets: the bundled Fashion-MNIST subset, IDX files, image folders and token caches."""

from .idx import read_idx
from .images import ImageDataset, ImageFolderDataset, fit_to_size
from .spec import is_token_spec, open_dataset
from .tokens import TokenDataset, encode_dataset

__all__ = [
    "open_dataset",
    "is_token_spec",
    "ImageDataset",
    "ImageFolderDataset",
    "TokenDataset",
    "encode_dataset",
    "read_idx",
    "fit_to_size",
]
