"""Image tokenizers: a trainable VQ-VAE (discrete codes), a KL autoencoder (continuous latents), their metrics."""

from .conv import to_uint8, to_unit
from .kinds import KINDS, kind_of, load_tokenizer, tokenizer_kind
from .kl import DiagonalGaussian, KLConfig, KLTokenizer, measure_scale
from .metrics import PSNR_CAP, codebook_usage, evaluate_tokenizer, psnr
from .objective import KLObjective, VQObjective
from .vq import VQConfig, VQTokenizer, VectorQuantizer

__all__ = [
    "KINDS",
    "PSNR_CAP",
    "DiagonalGaussian",
    "KLConfig",
    "KLObjective",
    "KLTokenizer",
    "VQConfig",
    "VQObjective",
    "VQTokenizer",
    "VectorQuantizer",
    "codebook_usage",
    "evaluate_tokenizer",
    "kind_of",
    "load_tokenizer",
    "measure_scale",
    "psnr",
    "to_uint8",
    "to_unit",
    "tokenizer_kind",
]
