"""The joint image+segmentation generator: one ``MaskedTransformer`` over the concatenated
token sequences z = x (+) y (Discrete Interpolants, Hu & Ommer 2025, Sec. 3.4, Eq. 5).

Layout, so that the joint model is a configuration of the generator and not a copy:

- Positions 0..N_x-1 hold the image's VQ codes, positions N_x..N-1 the segmentation tokens
  (``tokenizers/segmentation.py``); the grid is the two token grids stacked, (2h, w).
- Separate vocabularies in one table: image codes 0..K_x-1, segmentation labels
  K_x..K_x+K_y-1, one mask id K_x+K_y shared by both modalities. The single output layer
  scores the union, and the other modality's codes are masked out of every position's
  logits (a large negative constant, not -inf, so guidance's strong - weak stays finite):
  each position's softmax runs over its own modality's vocabulary, as with an output head
  per modality.
- The modality embedding: the position embeddings are learned per position, so the two
  blocks of positions already carry a learned offset per modality (pos_i + mod_m(i) is one
  free vector per position either way); a separate modality table would add nothing.
- Time: an explicit-timestep model (003 ETM) gets a time per token, the time of its
  modality (``token_times``), so the modalities may sit at independent times (as 003's
  appendix trains them) and a given modality reads t = 0 while the other is sampled.
- Class labels: the joint data has none; the one class slot always reads class 0. The
  conditioning signal is the other modality, and its dropout is that modality fully masked
  (``training/joint.py``, ``sampling/joint.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..schedules import get_schedule
from ..validate import integer
from .transformer import GeneratorConfig, MaskedTransformer

MODALITIES = ("image", "segmentation")
OTHER_MODALITY_LOGIT = -1e4  # exp(-1e4) is 0 in float32 and bf16; finite under guidance's differences


@dataclass
class JointConfig(GeneratorConfig):
    image_codes: int = 256  # K_x: the image tokenizer's codebook; the rest of codebook_size are labels
    image_tokens: int = 64  # N_x: the image's positions; the rest of the grid is the segmentation's

    def __post_init__(self) -> None:
        super().__post_init__()
        o = "JointConfig"
        self.image_codes = integer("image_codes", self.image_codes, 1, o)
        self.image_tokens = integer("image_tokens", self.image_tokens, 1, o)
        if self.image_codes >= self.codebook_size:
            raise MaskgenError(f"invalid {o}: codebook_size {self.codebook_size} leaves no segmentation labels after {self.image_codes} image codes")
        if self.image_tokens >= self.num_tokens:
            raise MaskgenError(f"invalid {o}: image_tokens {self.image_tokens} leaves no segmentation positions in {self.num_tokens}")
        if self.outputs:
            raise MaskgenError(f"invalid {o}: a joint generator predicts codes (outputs=0)")

    @property
    def seg_labels(self) -> int:
        return self.codebook_size - self.image_codes

    def slices(self) -> dict[str, slice]:
        """Each modality's positions in the sequence."""
        return {"image": slice(0, self.image_tokens), "segmentation": slice(self.image_tokens, self.num_tokens)}

    def vocab(self) -> dict[str, slice]:
        """Each modality's code ids."""
        return {"image": slice(0, self.image_codes), "segmentation": slice(self.image_codes, self.codebook_size)}


class JointTransformer(MaskedTransformer):
    """A ``MaskedTransformer`` whose output keeps each position to its modality's vocabulary
    and whose explicit time is per modality (module docstring)."""

    checkpoint_kind = "joint_generator"
    config_class = JointConfig
    config: JointConfig

    def __init__(self, config: JointConfig):
        super().__init__(config)
        allowed = torch.zeros(config.num_tokens, config.codebook_size, dtype=torch.bool)
        for name, where in config.slices().items():
            allowed[where, config.vocab()[name]] = True
        self.register_buffer("allowed", allowed, persistent=False)  # derived from the config, never saved

    def output(self, h: Tensor) -> Tensor:
        return super().output(h).masked_fill(~self.allowed, OTHER_MODALITY_LOGIT)

    def token_times(self, tokens: Tensor) -> Tensor | None:
        """[B, N] float: each position gets the time of its modality's state, t with
        gamma(t) = that modality's masked fraction under the training schedule; None for an
        implicit-timestep model. Read from the tokens, so a sampler with another schedule,
        a given modality (t = 0) and a dropped one (t = 1) all get the time training used."""
        c = self.config
        if not c.timestep_input:
            return None
        schedule = get_schedule(c.time_schedule)
        t = torch.empty(tokens.shape, dtype=torch.float32, device=tokens.device)
        for where in c.slices().values():
            frac = (tokens[:, where] == c.mask_id).double().mean(1)
            t[:, where] = schedule.inverse(frac).float().to(tokens.device)[:, None]
        return t

    def join(self, image_tokens: Tensor | None, seg_tokens: Tensor | None, batch: int) -> Tensor:
        """The joint state [B, N]: the given modalities' tokens (label ids shifted past the
        image codes), the mask id everywhere else."""
        c = self.config
        x = torch.full((batch, c.num_tokens), c.mask_id, dtype=torch.long, device=self.allowed.device)
        if image_tokens is not None:
            x[:, c.slices()["image"]] = image_tokens.reshape(batch, -1).to(x.device)
        if seg_tokens is not None:
            x[:, c.slices()["segmentation"]] = seg_tokens.reshape(batch, -1).to(x.device) + c.image_codes
        return x

    def split(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(image codes [B, N_x], segmentation labels [B, N_y]) of finished joint states."""
        c = self.config
        s = c.slices()
        return tokens[:, s["image"]], tokens[:, s["segmentation"]] - c.image_codes
