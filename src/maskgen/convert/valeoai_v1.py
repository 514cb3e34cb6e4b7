"""The MaskGIT transformer of Besnier & Chen 2023, "A Pytorch Reproduction of Masked
Generative Image Transformer" (valeoai/Maskgit-pytorch, v1), as a ``MaskedTransformer``.

Their layout is a configuration of maskgen's generator (``class_position="last"``,
``stems=True`` with LayerNorm eps 1e-12, ``output="tied"``, blocks with torch's default
eps 1e-5): a BERT-style transformer as in MaskGIT (Chang et al. 2022) whose one embedding
table of K + C + 2 rows holds the codes 0..K-1, [MASK] at K, the classes at K+1+y and "no
class" at K+1+C; the class token is the last position; the logits are the final states
times that table plus a learned bias per position and id.

Ids. maskgen's convention is the same order split in two tables, so no id is permuted:
rows 0..K of theirs are maskgen's ``tok_emb`` (codes, mask id K), rows K+1.. are
``cls_emb`` (class y at y, "no class" at C). A dropped label in their code
(``drop_label``) is label C here.

What is dropped, and why it changes nothing maskgen computes: their output bias has a row
for the class position and columns for [MASK] and the class ids; their forward already
slices the class position away, and maskgen never predicts the mask id or a class, so
``out_bias`` keeps rows 0..N-1 and columns 0..K-1. (Their sampler draws from a softmax over
K + 1 ids, [MASK] included, and clamps a drawn [MASK] to K-1 before decoding; maskgen's
softmax runs over the K codes only.)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import MaskgenError
from ..models.transformer import GeneratorConfig, MaskedTransformer
from ..validate import integer
from .source import SourceKeys, heads_for, tensor_dict
from .torch_file import read_torch_file

WHAT = "valeoai/Maskgit-pytorch v1 MaskGIT transformer"
# every published v1 size (base 768 x 24, big 1024 x 32, huge 1024 x 48) has 16 heads
HEADS = {768: 16, 1024: 16}
STEM_EPS = 1e-12  # their first_layer / last_layer LayerNorms; the blocks keep torch's 1e-5


def infer_config(src: SourceKeys, codebook_size: int, heads: int | None) -> GeneratorConfig:
    """The ``GeneratorConfig`` their shapes imply (heads from ``HEADS`` unless given)."""
    rows, width = src.require("tok_emb.weight").shape
    positions = src.require("pos_emb").shape[1]
    num_classes = rows - codebook_size - 2
    if num_classes < 1:
        raise MaskgenError(f"tok_emb.weight has {rows} rows: too few for {codebook_size} codes, [MASK], a class and no-class (is codebook_size right?)")
    side = math.isqrt(positions - 1)
    if side * side != positions - 1:
        raise MaskgenError(f"pos_emb has {positions} positions: not a square token grid plus the class token")
    depth = src.count("transformer.layers.")
    if depth < 1:
        raise MaskgenError(f"checkpoint is not a {WHAT}: it has no transformer.layers.0")
    hidden = src.require("transformer.layers.0.1.fn.net.0.weight").shape[0]
    return GeneratorConfig(
        codebook_size=codebook_size, grid=(side, side), num_classes=num_classes, width=width, depth=depth,
        heads=heads_for(width, heads, HEADS, WHAT), mlp_ratio=hidden / width, uncond="null",
        class_position="last", norm_eps=1e-5, stems=True, stem_eps=STEM_EPS, output="tied",
    )


def map_state(src: SourceKeys, model: MaskedTransformer) -> dict[str, torch.Tensor]:
    """maskgen's state dict from theirs; every key taken from ``src`` (``finish`` reports the rest)."""
    c = model.config
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor | None] = {}

    def copy(theirs: str, ours: str) -> None:
        out[ours] = src.take(theirs, expected[ours])

    k, n, rows = c.codebook_size, c.num_tokens, c.codebook_size + c.num_classes + 2
    table = src.take("tok_emb.weight", (rows, c.width))
    bias = src.take("bias", (n + 1, rows))
    if table is not None:
        out["tok_emb.weight"], out["cls_emb.weight"] = table[: k + 1], table[k + 1 :]
    if bias is not None:
        out["out_bias"] = bias[:n, :k]
    copy("pos_emb", "pos_emb")
    for theirs, ours in (("0", "0"), ("2", "1"), ("4", "3"), ("6", "4")):  # their Dropouts hold no weights
        for p in ("weight", "bias"):
            copy(f"first_layer.{theirs}.{p}", f"input_mlp.{ours}.{p}")
    for theirs, ours in (("0", "norm"), ("2", "output_mlp.0"), ("4", "output_mlp.2")):
        for p in ("weight", "bias"):
            copy(f"last_layer.{theirs}.{p}", f"{ours}.{p}")
    for i in range(c.depth):
        a, f = f"transformer.layers.{i}.0", f"transformer.layers.{i}.1"
        for p in ("weight", "bias"):
            copy(f"{a}.norm.{p}", f"blocks.{i}.norm1.{p}")
            copy(f"{a}.fn.mha.in_proj_{p}", f"blocks.{i}.attn.qkv.{p}")  # packed q, k, v as maskgen's qkv
            copy(f"{a}.fn.mha.out_proj.{p}", f"blocks.{i}.attn.proj.{p}")
            copy(f"{f}.norm.{p}", f"blocks.{i}.norm2.{p}")
            copy(f"{f}.fn.net.0.{p}", f"blocks.{i}.mlp.0.{p}")
            copy(f"{f}.fn.net.3.{p}", f"blocks.{i}.mlp.2.{p}")
    src.finish()
    return out  # type: ignore[return-value]  # finish() raised if any entry is None


def convert_valeoai_v1(path: str | Path, codebook_size: int = 1024, heads: int | None = None) -> MaskedTransformer:
    """A ``MaskedTransformer`` equal to the valeoai v1 checkpoint at ``path`` (its
    ``model_state_dict``; ``module.``/``_orig_mod.`` prefixes stripped), in eval mode.

    ``codebook_size``: K, which the embedding table's K + C + 2 rows do not fix alone (1024:
    the taming VQGAN f16 of their released models). ``heads``: attention heads, which no
    shape records (default: 16, as every published v1 size)."""
    codebook_size = integer("codebook_size", codebook_size, 1)
    if heads is not None:
        heads = integer("heads", heads, 1)
    state = tensor_dict(read_torch_file(path, WHAT), "model_state_dict", path, WHAT)
    src = SourceKeys(state, WHAT)
    model = MaskedTransformer(infer_config(src, codebook_size, heads))
    model.load_state_dict(map_state(src, model), strict=True)
    return model.eval()
