"""MAR's KL-16 VAE checkpoint (``kl16.ckpt``) -> :class:`LDMKLTokenizer`.

MAR (Li et al. 2024) and eMIGM (You et al. 2025) tokenize with LDM's KL autoencoder
(Rombach et al. 2022) trained by MAR's authors: ``kl16.ckpt`` holds its tensors under
``model``, with LDM's names. Every key must be one of the tokenizer's, with its shape.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MaskgenError
from ..tokenizers.ldm_kl import MAR_KL16_SCALE, LDMKLConfig, LDMKLTokenizer
from .ldm_shape import autoencoder_shape
from .torch_file import load_strict, read_torch_file, state_dict_at


def convert_mar_vae(path: str | Path, image_size: int = 256, scale: float = MAR_KL16_SCALE) -> LDMKLTokenizer:
    """The VAE in ``path`` (``{"model": state dict}``) as an :class:`LDMKLTokenizer`.

    The shape is read from the tensors (see :func:`~.ldm_shape.autoencoder_shape`), the token
    dimension from ``post_quant_conv``; ``scale`` is what MAR multiplies the latents by (0.2325
    for KL-16; it is not in the file). A missing, extra or mis-shaped key, or any pickled
    object that is not a tensor, is one line.
    """
    what = f"MAR VAE checkpoint {path}"
    weights = state_dict_at(read_torch_file(path, "MAR VAE checkpoint"), "model", what)
    if "post_quant_conv.weight" not in weights:
        raise MaskgenError(f"{what} holds no KL autoencoder: no post_quant_conv.weight")
    embed_dim = weights["post_quant_conv.weight"].shape[1]
    config = LDMKLConfig(**autoencoder_shape(weights, image_size, what), embed_dim=embed_dim, scale=scale)
    return load_strict(LDMKLTokenizer(config), weights, what)
