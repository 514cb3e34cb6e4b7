"""The MAE generator and diffusion head of MAR (Li et al. 2024, "Autoregressive Image
Generation without Vector Quantization") and eMIGM (You et al. 2025), as a ``ContinuousGenerator``.

Their model is a configuration of maskgen's continuous generator: ``arch="mae"``,
``buffer_size`` class slots (64 in the releases), LayerNorm eps 1e-6 throughout, and:

- MAR's ``fake_latent`` (the unconditional class input) is the class table's "no class"
  row C (``uncond="null"``);
- eMIGM's ``use_unsup_cfg``: its mask token *is* ``fake_latent`` (one parameter under two
  names, shape (1, D)), i.e. ``uncond="mask"``. Its EMA copy stores the two names apart (its
  EMA list skips the second name, so ``mask_token`` keeps the raw value); its own loader
  loads ``mask_token`` last, so that is the value its model runs with, and the value taken
  here. ``fake_latent`` is then accounted for, not used.

Keys: ``z_proj`` -> ``token_proj``, ``z_proj_ln`` -> ``input_norm``, ``mask_token`` ->
``mask_emb``, ``class_emb`` + ``fake_latent`` -> ``cls_emb``, ``encoder_pos_embed_learned``
-> ``pos_emb``, ``encoder_blocks``/``decoder_blocks`` (timm blocks: ``mlp.fc1``/``fc2``) ->
``encoder``/``decoder`` (``mlp.0``/``mlp.2``), ``decoder_pos_embed_learned`` ->
``decoder_pos_emb``, ``diffusion_pos_embed_learned`` -> ``z_pos_emb``, ``diffloss.net.*`` ->
``head.*`` (same names). The architecture comes from the pickled ``args`` when the file has
them (cross-checked against the shapes), otherwise from the shapes alone.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import MaskgenError
from ..models.continuous import ContinuousConfig, ContinuousGenerator
from ..validate import flag, integer
from .source import SourceKeys, heads_for, tensor_dict
from .torch_file import read_torch_file

WHAT = "MAR / eMIGM generator"
# encoder = decoder width -> heads of every published preset (mar_base/large/huge, emigm_xsmall..huge)
HEADS = {448: 8, 512: 8, 768: 12, 1024: 16, 1280: 16}
PRESET_HEADS = {"mar_base": 12, "mar_large": 16, "mar_huge": 16, "emigm_xsmall": 8, "emigm_small": 8,
                "emigm_base": 12, "emigm_large": 16, "emigm_huge": 16}
NORM_EPS = 1e-6  # their presets' norm_layer, and z_proj_ln


def read_args(file: dict[str, Any]) -> dict[str, Any]:
    """The pickled training arguments as a dict ({} if the file has none)."""
    args = file.get("args")
    if args is None:
        return {}
    if not isinstance(args, argparse.Namespace):
        raise MaskgenError(f"its 'args' is a {type(args).__name__}, not the argparse.Namespace MAR and eMIGM save")
    return vars(args)


def agree(name: str, from_args: Any, from_shapes: Any) -> None:
    if from_args is not None and from_args != from_shapes:
        raise MaskgenError(f"its args say {name}={from_args!r} but its weights imply {from_shapes!r}")


def infer_config(src: SourceKeys, args: dict[str, Any], heads: int | None) -> ContinuousConfig:
    """The ``ContinuousConfig`` the shapes imply, checked against ``args`` where both speak."""
    if args.get("use_mae", True) is not True:
        raise MaskgenError("eMIGM with use_mae=False (the encoder over every position, then the decoder) is not a layout maskgen has")
    if args.get("patch_size", 1) != 1:
        raise MaskgenError(f"patch_size {args['patch_size']}: maskgen's latents are one token per tokenizer position (patch_size 1)")
    width, token_dim = src.require("z_proj.weight").shape
    n = src.require("diffusion_pos_embed_learned").shape[1]
    slots = src.require("encoder_pos_embed_learned").shape[1]
    num_classes = src.require("class_emb.weight").shape[0]
    side = args["img_size"] // args["vae_stride"] if "img_size" in args and "vae_stride" in args else math.isqrt(n)
    if side * side != n:
        raise MaskgenError(f"diffusion_pos_embed_learned has {n} positions: not a {side}x{side} token grid")
    dec_width, enc_width = src.require("decoder_embed.weight").shape
    if dec_width != enc_width:
        raise MaskgenError(f"decoder width {dec_width} differs from encoder width {enc_width}: maskgen's MAE has one width")
    depth, decoder_depth = src.count("encoder_blocks."), src.count("decoder_blocks.")
    if depth < 1 or decoder_depth < 1:
        raise MaskgenError(f"checkpoint is not a {WHAT}: it has no encoder_blocks.0 or decoder_blocks.0")
    unsup = len(src.require("mask_token").shape) == 2  # eMIGM's use_unsup_cfg: mask_token is fake_latent (1, D)
    agree("use_unsup_cfg", args.get("use_unsup_cfg"), unsup)
    agree("vae_embed_dim", args.get("vae_embed_dim"), token_dim)
    agree("class_num", args.get("class_num"), num_classes)
    agree("buffer_size", args.get("buffer_size"), slots - n)
    head_depth = src.count("diffloss.net.res_blocks.")
    head_width = src.require("diffloss.net.input_proj.weight").shape[0]
    agree("diffloss_d", args.get("diffloss_d"), head_depth)
    agree("diffloss_w", args.get("diffloss_w"), head_width)
    preset = PRESET_HEADS.get(args.get("model"))
    if preset is not None and heads is not None and heads != preset:
        raise MaskgenError(f"heads={heads} but its args name the preset {args['model']} with {preset} heads")
    if preset is not None and HEADS.get(width) != preset:
        raise MaskgenError(f"its args name the preset {args['model']} but its width is {width}")
    return ContinuousConfig(
        token_dim=token_dim, grid=(side, side), num_classes=num_classes, width=width, depth=depth,
        decoder_depth=decoder_depth, heads=heads_for(width, heads or preset, HEADS, WHAT),
        mlp_ratio=src.require("encoder_blocks.0.mlp.fc1.weight").shape[0] / width, arch="mae",
        buffer_size=slots - n, head_width=head_width, head_depth=head_depth,
        head_draws=args.get("diffusion_batch_mul", 4), uncond="mask" if unsup else "null", norm_eps=NORM_EPS,
    )


BLOCK = (("norm1", "norm1"), ("attn.qkv", "attn.qkv"), ("attn.proj", "attn.proj"), ("norm2", "norm2"), ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.2"))


def map_state(src: SourceKeys, model: ContinuousGenerator) -> dict[str, torch.Tensor]:
    """maskgen's state dict from theirs; every key taken from ``src`` (``finish`` reports the rest)."""
    c = model.config
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor | None] = {}

    def copy(theirs: str, ours: str) -> None:
        out[ours] = src.take(theirs, expected[ours])

    def linear(theirs: str, ours: str) -> None:
        for p in ("weight", "bias"):
            copy(f"{theirs}.{p}", f"{ours}.{p}")

    unsup = c.uncond == "mask"
    mask = src.take("mask_token", (1, c.width) if unsup else (1, 1, c.width))
    fake = src.take("fake_latent", (1, c.width))
    classes = src.take("class_emb.weight", (c.num_classes, c.width))
    out["mask_emb"] = None if mask is None else mask.reshape(c.width)
    # row C: MAR's fake_latent; with use_unsup_cfg the mask embedding replaces it in
    # ``class_slots``, so the row is never read and holds the same value for clarity
    null = mask.reshape(1, c.width) if unsup and mask is not None else fake
    out["cls_emb.weight"] = None if classes is None or null is None else torch.cat([classes, null])
    linear("z_proj", "token_proj")
    linear("z_proj_ln", "input_norm")
    copy("encoder_pos_embed_learned", "pos_emb")
    linear("encoder_norm", "encoder_norm")
    linear("decoder_embed", "decoder_embed")
    copy("decoder_pos_embed_learned", "decoder_pos_emb")
    linear("decoder_norm", "decoder_norm")
    copy("diffusion_pos_embed_learned", "z_pos_emb")
    for theirs, ours, depth in (("encoder_blocks", "encoder", c.depth), ("decoder_blocks", "decoder", c.decoder_depth)):
        for i in range(depth):
            for a, b in BLOCK:
                linear(f"{theirs}.{i}.{a}", f"{ours}.{i}.{b}")
    for key in expected:
        if key.startswith("head."):
            copy("diffloss.net." + key[len("head.") :], key)
    src.finish()
    return out  # type: ignore[return-value]  # finish() raised if any entry is None


def convert_mar(path: str | Path, use_ema: bool = True, heads: int | None = None) -> ContinuousGenerator:
    """A ``ContinuousGenerator`` equal to the MAR or eMIGM checkpoint at ``path``, in eval mode.

    ``use_ema``: the EMA weights (``model_ema``, what their demos and evaluations load; a
    file may hold only these, as eMIGM's loader allows) or the raw ones (``model``).
    ``heads``: attention heads, which no shape records; by default the preset named in the
    file's args, else the published preset of that width."""
    flag("use_ema", use_ema)
    if heads is not None:
        heads = integer("heads", heads, 1)
    file = read_torch_file(path, WHAT, allowed=[argparse.Namespace])
    if not isinstance(file, dict):
        raise MaskgenError(f"{path} holds a {type(file).__name__}, not the dict MAR and eMIGM save")
    key = "model_ema" if use_ema else "model"
    if file.get(key) is None and isinstance(file.get("model" if use_ema else "model_ema"), dict):
        other = "use_ema=False for its raw weights ('model')" if use_ema else "use_ema=True for its EMA weights ('model_ema')"
        raise MaskgenError(f"{path} has no {key!r} weights; pass {other}")
    src = SourceKeys(tensor_dict(file, key, path, WHAT), WHAT)
    model = ContinuousGenerator(infer_config(src, read_args(file), heads))
    model.load_state_dict(map_state(src, model), strict=True)
    return model.eval()
