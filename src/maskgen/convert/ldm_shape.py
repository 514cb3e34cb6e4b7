"""Reading a VQGAN/LDM autoencoder's shape (:class:`~maskgen.tokenizers.ldm.AutoencoderShape`)
off its state dict, so a converter needs no config file beside the weights."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ..errors import MaskgenError


def autoencoder_shape(weights: Mapping[str, torch.Tensor], image_size: int, what: str) -> dict[str, Any]:
    """The shape fields the ``encoder.*`` / ``decoder.*`` tensors determine.

    Widths come from the conv kernels, the level and block counts from the key indices,
    attention from which levels hold ``attn`` keys; attention resolutions are counted from
    ``image_size`` (the network is convolutional, so the image size is not in the weights).
    ``embed_dim`` sits in the 1x1 convs, which differ by model, and is read by the caller.
    A tensor this needs that is missing is one line; every other key is checked when the
    weights are loaded into the model built from this shape.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in weights:
            raise MaskgenError(f"{what} is not a VQGAN/LDM autoencoder state dict: it has no {key}")
        return tuple(weights[key].shape)

    ch, channels = shape("encoder.conv_in.weight")[:2]
    levels = _indices(weights, "encoder.down.")
    if levels != list(range(len(levels))) or not levels:
        raise MaskgenError(f"{what}: encoder levels are numbered {levels}, expected 0..n-1")
    ch_mult = []
    for level in levels:
        width = shape(f"encoder.down.{level}.block.0.conv1.weight")[0]
        if width % ch:
            raise MaskgenError(f"{what}: level {level} has {width} channels, not a multiple of ch {ch}")
        ch_mult.append(width // ch)
    resolutions = [image_size >> level for level in levels]
    return {
        "image_size": image_size,
        "channels": channels,
        "ch": ch,
        "ch_mult": tuple(ch_mult),
        "num_res_blocks": len(_indices(weights, "encoder.down.0.block.")),
        "encoder_attn_resolutions": tuple(r for i, r in enumerate(resolutions) if f"encoder.down.{i}.attn.0.q.weight" in weights),
        "decoder_attn_resolutions": tuple(r for i, r in enumerate(resolutions) if f"decoder.up.{i}.attn.0.q.weight" in weights),
        "z_channels": shape("decoder.conv_in.weight")[1],
    }


def _indices(weights: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    """The sorted integers ``i`` of keys ``prefix + "i." + ...``."""
    found = {key[len(prefix):].split(".", 1)[0] for key in weights if key.startswith(prefix)}
    return sorted(int(i) for i in found if i.isdigit())
