"""The continuous-token generator: latent vectors and a mask in, one conditioning vector z
per position out, and the diffusion head that turns z into a token (MAR, Li et al. 2024;
eMIGM, You et al. 2025, Sec. 4).

Inputs are latents [B, N, d] with a boolean mask [B, N] (True: masked) and class labels
in {0..C-1}, C meaning "no class". The mask embedding is one learned vector; with
``uncond="mask"`` it is also the unconditional class input ("CFG with mask", eMIGM Sec. 4;
its code's ``use_unsup_cfg``), otherwise the class table's extra row is (MAR's
``fake_latent``). ``buffer_size`` slots before the tokens all hold the class input (MAR:
64 at scale).

Two layouts (eMIGM Fig. 2c):

- ``arch="single"``: one transformer over the class slots and all N positions, masked ones
  holding the mask embedding.
- ``arch="mae"`` (eMIGM's default): the encoder runs on the class slots and the *visible*
  tokens only (MAE, He et al. 2022); the decoder gets the encoder's outputs at their
  positions and the mask embedding at every masked one. With Bernoulli masking the visible
  count varies per row, so rows are padded to the batch's longest and padding keys hidden.

Both end in a learned per-position embedding added to z (MAR's diffusion position embed).
The blocks are ``transformer.Block``, the discrete generator's own. An explicit-timestep
model (003 ETM) adds an embedding of t to the encoder's input. ``norm_eps`` is the epsilon of
every LayerNorm of the transformer (MAR and eMIGM: 1e-6); with it a published MAR or eMIGM
MAE (``arch="mae"``, ``buffer_size=64``, ``uncond="null"`` for MAR's ``fake_latent``,
``"mask"`` for eMIGM's ``use_unsup_cfg``) is a configuration of this class.

Dropout (``attn_dropout``, ``proj_dropout``, ``mlp_dropout``: ``transformer.Block``'s), off by
default and active only in train mode; MAR (Li et al. 2024) and eMIGM code train with 0.1 on
all three (timm's ``Block(attn_drop, proj_drop)``, whose MLP drops with ``proj_drop``).

``forward`` is the training path (what DistributedDataParallel wraps): the head's per-token
denoising loss at the masked positions. ``condition`` is the sampling path: z at every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..checkpoint import Checkpointable, ConfigDict
from ..errors import MaskgenError
from ..validate import flag, integer, number, pair
from .diffusion_head import CosineNoise, DiffusionHead, denoising_loss
from .transformer import Block, check_dropout, check_time_schedule, layer_norm, schedule_time, timestep_embedding

ARCHS = ("single", "mae")


@dataclass
class ContinuousConfig(ConfigDict):
    token_dim: int = 16
    grid: tuple[int, int] = (8, 8)
    num_classes: int = 10
    width: int = 256
    depth: int = 6  # blocks of the single transformer, or of the MAE encoder
    decoder_depth: int | None = None  # MAE decoder blocks (None: depth); arch "mae" only
    heads: int = 4
    mlp_ratio: float = 4.0
    arch: str = "mae"
    buffer_size: int = 1  # class slots before the tokens (MAR: 64)
    head_width: int = 256
    head_depth: int = 3
    head_draws: int = 4  # noise draws per token per training step (MAR's diffusion_batch_mul)
    uncond: str = "mask"  # "mask": the mask embedding is the unconditional input (eMIGM); "null": a class row (MAR)
    timestep_input: bool = False  # explicit timestep model (003)
    time_schedule: str = "linear"  # the schedule whose time t an explicit-timestep model reads
    norm_eps: float = 1e-5  # LayerNorm eps of the transformer (MAR, eMIGM: 1e-6)
    attn_dropout: float = 0.0  # on the attention probabilities, train mode only
    proj_dropout: float = 0.0  # after the attention's output projection
    mlp_dropout: float = 0.0  # after the MLP's GELU and after its output

    def __post_init__(self) -> None:
        o = "ContinuousConfig"
        self.grid = tuple(integer(f"grid[{i}]", g, 1, o) for i, g in enumerate(pair("grid", self.grid, o)))
        for name in ("token_dim", "num_classes", "width", "depth", "heads", "buffer_size", "head_width", "head_depth", "head_draws"):
            setattr(self, name, integer(name, getattr(self, name), 1, o))
        self.mlp_ratio = number("mlp_ratio", self.mlp_ratio, 1.0, owner=o)
        self.norm_eps = number("norm_eps", self.norm_eps, 0.0, lo_open=True, owner=o)
        flag("timestep_input", self.timestep_input, o)
        check_time_schedule(self.time_schedule, o)
        check_dropout(self, o)
        if self.arch not in ARCHS:
            raise MaskgenError(f"invalid {o}: unknown arch {self.arch!r}; choose from {', '.join(ARCHS)}")
        if self.uncond not in ("null", "mask"):
            raise MaskgenError(f"invalid {o}: unknown uncond mode {self.uncond!r}; choose null or mask")
        if self.arch == "mae":
            self.decoder_depth = integer("decoder_depth", self.depth if self.decoder_depth is None else self.decoder_depth, 1, o)
        elif self.decoder_depth is not None:
            raise MaskgenError(f"invalid {o}: decoder_depth applies to arch mae, not {self.arch}")
        if self.width % self.heads:
            raise MaskgenError(f"invalid {o}: width {self.width} is not divisible by heads {self.heads}")

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]


def visible_first(keep: Tensor) -> tuple[Tensor, Tensor]:
    """For keep [B, S] (True: visible), the indices [B, L] of each row's visible slots in
    order, padded to the longest row L, and which of them are real (not padding) [B, L]."""
    counts = keep.sum(1)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    longest = int(counts.max())
    valid = torch.arange(longest, device=keep.device)[None] < counts[:, None]
    return order[:, :longest], valid


class ContinuousGenerator(nn.Module, Checkpointable):
    """(latents, mask, labels[, t]) -> z per position, plus the diffusion head that reads z."""

    def __init__(self, config: ContinuousConfig):
        super().__init__()
        self.config = c = config
        slots = c.buffer_size + c.num_tokens
        self.token_proj = nn.Linear(c.token_dim, c.width)  # MAR's z_proj
        self.mask_emb = nn.Parameter(torch.zeros(c.width))
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.width)  # row C: "no class"
        self.pos_emb = nn.Parameter(torch.zeros(1, slots, c.width))
        self.input_norm = layer_norm(c.width, c.norm_eps)  # MAR's z_proj_ln
        if c.timestep_input:
            self.time_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        drops = dict(attn_dropout=c.attn_dropout, proj_dropout=c.proj_dropout, mlp_dropout=c.mlp_dropout)
        self.encoder = nn.ModuleList(Block(c.width, c.heads, c.mlp_ratio, c.norm_eps, **drops) for _ in range(c.depth))
        self.encoder_norm = layer_norm(c.width, c.norm_eps)
        if c.arch == "mae":
            self.decoder_embed = nn.Linear(c.width, c.width)
            self.decoder_pos_emb = nn.Parameter(torch.zeros(1, slots, c.width))
            self.decoder = nn.ModuleList(Block(c.width, c.heads, c.mlp_ratio, c.norm_eps, **drops) for _ in range(c.decoder_depth))
            self.decoder_norm = layer_norm(c.width, c.norm_eps)
        self.z_pos_emb = nn.Parameter(torch.zeros(1, c.num_tokens, c.width))
        self.head = DiffusionHead(c.token_dim, c.width, c.head_width, c.head_depth)
        self.noise = CosineNoise()
        self.sha256: str | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the head keeps its own initialisation (MAR zero-initialises its modulation layers)
        head = set(self.head.modules())
        for m in self.modules():
            if m in head:
                continue
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=0.02)
        for p in (self.mask_emb, self.pos_emb, self.z_pos_emb, getattr(self, "decoder_pos_emb", None)):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def time_input(self, gamma: Tensor | float, batch: int, device: torch.device | str) -> Tensor | None:
        """The time an explicit-timestep model reads for masked fraction ``gamma``; None if implicit."""
        return schedule_time(self.config.timestep_input, self.config.time_schedule, gamma, batch, device)

    def check_inputs(self, latents: Tensor, mask: Tensor, labels: Tensor) -> None:
        c = self.config
        if latents.dim() != 3 or tuple(latents.shape[1:]) != (c.num_tokens, c.token_dim):
            raise MaskgenError(f"latents must be [B, {c.num_tokens}, {c.token_dim}], got {list(latents.shape)}")
        if tuple(mask.shape) != tuple(latents.shape[:2]) or tuple(labels.shape) != (len(latents),):
            raise MaskgenError(f"mask must be [B, N] and labels [B] for latents {list(latents.shape)}, got {list(mask.shape)} and {list(labels.shape)}")

    def class_slots(self, labels: Tensor) -> Tensor:
        """[B, buffer_size, D]: every buffer slot holds the class input (MAR)."""
        c = self.config
        cls = self.cls_emb(labels)
        if c.uncond == "mask":
            cls = torch.where((labels == c.num_classes)[:, None], self.mask_emb.to(cls.dtype), cls)
        return cls[:, None].expand(-1, c.buffer_size, -1)

    def condition(self, latents: Tensor, mask: Tensor, labels: Tensor, t: Tensor | None = None) -> Tensor:
        """z [B, N, D] for latents [B, N, d], mask [B, N] (True: masked), labels [B] (0..C), t [B] or None.
        A masked position's latent is never read (it may hold anything, even NaN)."""
        c = self.config
        self.check_inputs(latents, mask, labels)
        if c.timestep_input and t is None:
            raise MaskgenError("this generator was trained with explicit timesteps: pass t")
        tokens = self.token_proj(latents.nan_to_num(0.0))
        tokens = torch.where(mask[..., None], self.mask_emb.to(tokens.dtype), tokens)
        x = torch.cat([self.class_slots(labels).to(tokens.dtype), tokens], dim=1) + self.pos_emb
        if c.timestep_input:
            x = x + self.time_mlp(timestep_embedding(t, c.width))[:, None]
        x = self.input_norm(x)
        if c.arch == "single":
            h = self.encoder_norm(self.run(self.encoder, x))
        else:
            h = self.decode(self.encode(x, mask), mask)
        return h[:, c.buffer_size :] + self.z_pos_emb

    @staticmethod
    def run(blocks: nn.ModuleList, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        for block in blocks:
            x = block(x, key_mask=key_mask)[0]
        return x

    def encode(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MAE encoder on the class slots and the visible tokens only: (states [B, L, D] of
        the gathered slots, their slot indices [B, L], which are real [B, L])."""
        keep = torch.cat([mask.new_ones(len(mask), self.config.buffer_size), ~mask], dim=1)
        index, valid = visible_first(keep)
        gathered = x.gather(1, index[..., None].expand(-1, -1, x.shape[-1])) * valid[..., None]
        return self.encoder_norm(self.run(self.encoder, gathered, valid)), index, valid

    def decode(self, encoded: tuple[Tensor, Tensor, Tensor], mask: Tensor) -> Tensor:
        """MAE decoder: encoder outputs back at their slots, the mask embedding at masked ones."""
        h, index, valid = encoded
        h = self.decoder_embed(h) * valid[..., None]
        b, _, d = h.shape
        slots = self.config.buffer_size + mask.shape[1]
        # padding entries point at masked slots and carry zeros; those slots take the mask embedding below
        placed = h.new_zeros(b, slots, d).scatter(1, index[..., None].expand(-1, -1, d), h)
        keep = torch.cat([mask.new_ones(b, self.config.buffer_size), ~mask], dim=1)
        x = torch.where(keep[..., None], placed, self.mask_emb.to(placed.dtype)) + self.decoder_pos_emb
        return self.decoder_norm(self.run(self.decoder, x))

    def forward(self, latents: Tensor, mask: Tensor, labels: Tensor, t: Tensor | None, generator: torch.Generator) -> Tensor:
        """Training path: the head's denoising loss [B, N] at the masked positions (0 elsewhere),
        ``head_draws`` noise draws per token from ``generator`` (MAR's diffusion loss)."""
        z = self.condition(latents, mask, labels, t)
        if not mask.any():  # a Bernoulli draw can mask nothing in a small batch
            return z.new_zeros(mask.shape, dtype=torch.float32) + 0.0 * z.float().sum()
        per_token = denoising_loss(self.head, self.noise, latents[mask].float(), z[mask], self.config.head_draws, generator)
        return z.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, per_token.float())

    # -- persistence: ``save`` and ``load`` come from Checkpointable -----------------------------
    checkpoint_name = "generator"
    checkpoint_kind = "continuous_generator"
    config_class = ContinuousConfig
