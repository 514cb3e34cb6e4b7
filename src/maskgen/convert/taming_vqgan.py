"""taming-transformers' VQGAN checkpoint (a Lightning ``.ckpt``) -> :class:`TamingVQTokenizer`.

The published VQGANs of Esser et al. 2021 (among them the ImageNet f16-1024 that MaskGIT's
PyTorch reproduction, valeoai/Maskgit-pytorch, tokenizes with) are Lightning checkpoints:
the model's tensors under ``state_dict``, beside training state. The ``loss.*`` tensors
(perceptual network, discriminator) are training-only and dropped; every other key must be
one of the tokenizer's, with its shape.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MaskgenError
from ..tokenizers.taming_vq import TamingVQConfig, TamingVQTokenizer
from .ldm_shape import autoencoder_shape
from .torch_file import load_strict, read_torch_file, stand_in, state_dict_at

LIGHTNING_CALLBACK = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
LIGHTNING_ALLOWED = [(stand_in(LIGHTNING_CALLBACK), LIGHTNING_CALLBACK)]
"""What a Lightning 1.0 checkpoint pickles besides tensors and containers: the
``ModelCheckpoint`` class, as the key of its ``callbacks`` entry."""

TRAINING_ONLY = "loss."


def convert_taming_vqgan(path: str | Path, image_size: int = 256) -> TamingVQTokenizer:
    """The VQGAN in the Lightning checkpoint ``path`` as a :class:`TamingVQTokenizer`.

    Widths, levels, attention, ``z_channels``, ``embed_dim`` and the codebook size are read
    from the tensors' shapes; ``image_size`` (256 for the ImageNet models) sets the images
    ``encode`` takes and where the attention resolutions count from. A missing, extra or
    mis-shaped key, or a pickled object other than Lightning's callback key, is one line.
    """
    what = f"taming VQGAN checkpoint {path}"
    state = state_dict_at(read_torch_file(path, "taming VQGAN checkpoint", LIGHTNING_ALLOWED), "state_dict", what)
    weights = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY)}
    if "quantize.embedding.weight" not in weights or "quant_conv.weight" not in weights:
        raise MaskgenError(f"{what} holds no VQGAN: no quantize.embedding.weight or quant_conv.weight")
    codebook_size, embed_dim = weights["quantize.embedding.weight"].shape
    shape = autoencoder_shape(weights, image_size, what)
    config = TamingVQConfig(**shape, embed_dim=embed_dim, codebook_size=codebook_size)
    return load_strict(TamingVQTokenizer(config), weights, what)
