"""Image tokenizers: a trainable VQ-VAE and its metrics."""

from .metrics import PSNR_CAP, codebook_usage, evaluate_tokenizer, psnr
from .objective import VQObjective
from .vq import VQConfig, VQTokenizer, VectorQuantizer, to_uint8, to_unit

__all__ = [
    "PSNR_CAP",
    "VQConfig",
    "VQObjective",
    "VQTokenizer",
    "VectorQuantizer",
    "codebook_usage",
    "evaluate_tokenizer",
    "psnr",
    "to_uint8",
    "to_unit",
]
