"""Image tokenizers: a trainable VQ-VAE (discrete codes), a KL autoencoder (continuous latents), their metrics;
and the published VQGAN and LDM/MAR KL autoencoders, for imported checkpoints; and the segmentation
tokenizer of a joint model's label maps (``segmentation.py``)."""

from .conv import to_uint8, to_unit
from .kinds import IMPORTED, KINDS, copy_tokenizer, is_continuous, kind_of, load_tokenizer, tokenizer_kind
from .kl import DiagonalGaussian, KLConfig, KLTokenizer, measure_scale
from .ldm import AutoencoderShape
from .ldm_kl import MAR_KL16_SCALE, LDMKLConfig, LDMKLTokenizer
from .metrics import PSNR_CAP, codebook_usage, evaluate_tokenizer, psnr
from .segmentation import SegmentationTokenizer, SegmentationTokenizerConfig
from .taming_vq import TamingVQConfig, TamingVQTokenizer
from .vq import VQConfig, VQTokenizer, VectorQuantizer

__all__ = [
    "IMPORTED",
    "KINDS",
    "MAR_KL16_SCALE",
    "PSNR_CAP",
    "AutoencoderShape",
    "DiagonalGaussian",
    "KLConfig",
    "KLTokenizer",
    "LDMKLConfig",
    "LDMKLTokenizer",
    "SegmentationTokenizer",
    "SegmentationTokenizerConfig",
    "TamingVQConfig",
    "TamingVQTokenizer",
    "VQConfig",
    "VQTokenizer",
    "VectorQuantizer",
    "codebook_usage",
    "copy_tokenizer",
    "evaluate_tokenizer",
    "kind_of",
    "load_tokenizer",
    "measure_scale",
    "psnr",
    "to_uint8",
    "to_unit",
    "tokenizer_kind",
    "is_continuous",
]
