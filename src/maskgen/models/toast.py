"""TOAST semantic smoothing for self-guidance (000 Sec. 3.3 and Appendix A; Shi et al., TOAST).

A small module attached to a *frozen* generator. From the first (normal) pass it takes the
final hidden states, keeps the tokens that agree with a learned class anchor (cosine
similarity clamped to [0, 1], used as a soft token mask), applies a channel transform
(initialised to the identity) and decodes the result top-down, last layer first, into one
feature per layer. A second pass of the generator on a blank canvas (every token and the
class slot masked) adds each layer's feature, through that layer's value projection, to
its attention values. Its logits are the "semantically smoothed" weak branch of
self-guidance (000 Eq. 6):

    first  = G(x_t, c)                               # the strong branch, hidden states kept
    weak   = G(blank, top_down = TOAST(first.hidden, c))

Each decoder is two bias-free linear maps: the first estimates the layer's input from its
output (and is passed on to the layer below), the second gives the layer's feature. The
regulariser (weight 0.1 in 000's recipe) trains the first map to invert its layer, MSE on
detached activations of the frozen first pass.

Every map after the token selection is linear, so for sampling (``weak_logits``) the chain
transform -> down ... -> feature -> the layer's value weights is multiplied out into one
[depth x D, D] matrix (a few D^3 products, kept between calls while the weights stay the
same): each layer's offset is one product of the selected tokens with its slice, made as
the pass reaches that layer (``LayerValues``), and added to its attention values. That is
the same map as the layer-by-layer path that training runs, up to float32 rounding. The
blank canvas is one input row shared by the steered rows.

The module is saved as its own checkpoint (``self-guidance.{safetensors,json}``) that
records the sha256 of the generator it was trained on; loading it onto any other
generator fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Checkpointable, ConfigDict
from ..errors import MaskgenError
from ..onednn import project
from .transformer import MaskedTransformer


@dataclass
class ToastConfig(ConfigDict):
    width: int
    depth: int
    num_classes: int


class TopDownDecoder(nn.Module):
    """One layer of the top-down path: (estimate of the layer input, this layer's feature)."""

    def __init__(self, width: int):
        super().__init__()
        self.down = nn.Linear(width, width, bias=False)
        self.feature = nn.Linear(width, width, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        below = self.down(x)
        return below, self.feature(below)


class LayerValues(Sequence):
    """Each layer's value offset, selected tokens @ that layer's map, made when the pass asks
    for it: used while still in cache rather than all layers' offsets written at once."""

    def __init__(self, selected: Tensor, maps: Tensor) -> None:
        self.selected, self.maps = selected, maps.chunk(len(maps) // selected.shape[-1])

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, i: int) -> Tensor:
        return project(self.selected, self.maps[i])


class ToastModule(nn.Module, Checkpointable):
    """Anchor, token selection, channel transform and per-layer top-down decoders."""

    def __init__(self, config: ToastConfig):
        super().__init__()
        self.config = config
        # row C is the unconditional anchor, used when sampling with the null class
        self.anchor = nn.Embedding(config.num_classes + 1, config.width)
        self.transform = nn.Parameter(torch.eye(config.width))
        self.decoders = nn.ModuleList(TopDownDecoder(config.width) for _ in range(config.depth))
        self.base_sha256: str | None = None
        self.sha256: str | None = None

    @classmethod
    def for_generator(cls, generator: MaskedTransformer) -> "ToastModule":
        c = generator.config
        module = cls(ToastConfig(c.width, c.depth, c.num_classes))
        module.base_sha256 = generator.sha256
        return module

    def selected(self, hidden: Tensor, labels: Tensor) -> Tensor:
        """Soft token selection: each token scaled by its cosine similarity with the class anchor,
        clamped to [0, 1] (``F.cosine_similarity`` with its eps, the anchor normalised once per
        row rather than once per token)."""
        anchor = self.anchor(labels)
        anchor = anchor / anchor.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        sim = (hidden @ anchor[..., None]).squeeze(-1) / hidden.norm(dim=-1).clamp_min(1e-8)
        return hidden * sim.clamp(0.0, 1.0)[..., None]

    def select(self, hidden: Tensor, labels: Tensor) -> Tensor:
        """Soft token selection, then the channel transform."""
        return self.selected(hidden, labels) @ self.transform

    def value_maps(self, generator: MaskedTransformer) -> Tensor:
        """[depth x D, D], a linear layer's weight: selected tokens -> every layer's attention-value
        offset, the top-down chain (transform, down maps, feature map) and the layer's value
        weights multiplied out. Kept between calls while no gradient is recorded and no
        weight involved has changed (a sampler calls it at every step with the same weights)."""
        weights = [self.transform] + [w for i, d in enumerate(self.decoders) for w in (d.down.weight, d.feature.weight, generator.blocks[i].attn.value_weight)]
        try:
            key = (id(generator), *((w.data_ptr(), w._version) for w in weights))
        except RuntimeError:  # weights made under inference mode track no version: never cached
            key = None
        cached = getattr(self, "_value_maps", None)
        if key is not None and cached is not None and cached[0] == key and not torch.is_grad_enabled():
            return cached[1]
        chain, maps = self.transform.T, [self.transform] * len(self.decoders)
        for i in reversed(range(len(self.decoders))):
            chain = self.decoders[i].down.weight @ chain
            maps[i] = generator.blocks[i].attn.value_weight @ self.decoders[i].feature.weight @ chain
        out = torch.cat(maps)
        if key is not None and not torch.is_grad_enabled():
            self._value_maps = (key, out)
        return out

    def forward(self, hidden: Tensor, labels: Tensor) -> list[Tensor]:
        """Top-down features, one per generator layer (first layer first), each [B, 1 + N, D]."""
        x = self.select(hidden, labels)
        features: list[Tensor] = [x] * len(self.decoders)
        for i in reversed(range(len(self.decoders))):
            x, features[i] = self.decoders[i](x)
        return features

    def regulariser(self, layer_io: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Sum over layers of MSE(down(output), input), activations detached (TOAST's variational loss)."""
        if len(layer_io) != len(self.decoders):
            raise MaskgenError(f"need (input, output) of {len(self.decoders)} layers, got {len(layer_io)}")
        return sum(F.mse_loss(d.down(out.detach().float()), inp.detach().float()) for d, (inp, out) in zip(self.decoders, layer_io))

    def weak_logits(self, generator: MaskedTransformer, hidden: Tensor, labels: Tensor, t: Tensor | None = None) -> Tensor:
        """The smoothed branch: a blank-canvas pass of ``generator`` steered by ``hidden``
        (the multiplied-out maps: one product per layer; see the module docstring). The canvas
        is one row that the generator shares between the B steered rows."""
        blank = torch.full((1, hidden.shape[1] - 1), generator.mask_id, dtype=torch.long, device=hidden.device)
        return generator.run(blank, None, t, values=LayerValues(self.selected(hidden, labels), self.value_maps(generator))).logits

    def check_base(self, generator: MaskedTransformer, where: str = "") -> None:
        c = generator.config
        if (c.width, c.depth, c.num_classes) != (self.config.width, self.config.depth, self.config.num_classes):
            raise MaskgenError(
                f"self-guidance module{where} is for a generator of width {self.config.width}, depth {self.config.depth}, "
                f"{self.config.num_classes} classes; this one has {c.width}, {c.depth}, {c.num_classes}"
            )
        if self.base_sha256 and generator.sha256 and self.base_sha256 != generator.sha256:
            raise MaskgenError(
                f"self-guidance module{where} was trained on generator sha256 {self.base_sha256[:12]}..., "
                f"not on this one ({generator.sha256[:12]}...): fine-tune one for it with `maskgen finetune-sg`"
            )

    # -- persistence: ``save`` comes from Checkpointable -----------------------------------
    checkpoint_name = "self-guidance"
    checkpoint_kind = "self_guidance"
    config_class = ToastConfig

    def checkpoint_record(self) -> dict[str, str]:
        """The generator's hash, always: without it a load could not refuse another generator."""
        if not self.base_sha256:
            raise MaskgenError("cannot save a self-guidance module without the sha256 of its generator")
        return {"base_sha256": self.base_sha256}

    def restore(self, record: dict, base: MaskedTransformer | None, where: str) -> None:
        """The sha256 of the generator it was trained on, checked against ``base`` (required)."""
        if base is None:
            raise MaskgenError(f"a self-guidance module{where} loads onto the generator it was trained on: load(folder, generator)")
        self.base_sha256 = record.get("base_sha256")
        self.check_base(base, where)
