"""The generator: a bidirectional pre-norm transformer over the token grid plus a class token.

Inputs are token ids in {0..K-1} with K the mask id, and class labels in {0..C-1} with C
meaning "no class" (classifier-free guidance). The unconditional input is either a
learned null-class row (MaskGIT) or the mask embedding itself ("CFG with mask", 002
Sec. 4). An optional embedding of t makes it an explicit-timestep model (003 ETM); by
default the model is implicit (003 Sec. 3.2, 002 footnote 1). It never predicts the mask id.

``run`` exposes what guidances and fine-tuning modules read from a pass: the final hidden
states, the attention each token receives in the last block (SAG), and every block's
input and output. Per-layer ``top_down`` features, projected by each block's own value
weights and added to its attention values, let a parameter-efficient module (TOAST,
000 Appendix A) steer a frozen generator without copying this file; ``values`` are such
offsets already projected (TOAST's inference path multiplies its linear maps and the value
weights out, so a guided step costs one product instead of two per layer). ``labels=None``
puts the mask embedding in the class slot too: the "blank canvas" of 000 Sec. 3.3.

Layout options, so that a published generator is a configuration of this class rather than
a copy of it (the defaults are maskgen's own layout; checkpoints written before an option
existed load unchanged):

- ``class_position``: the class slot before the tokens ("first") or after them ("last",
  as in Besnier & Chen 2023, "A Pytorch Reproduction of Masked Generative Image Transformer").
- ``norm_eps``: the LayerNorm epsilon of the blocks and of the final norm.
- ``stems``: Besnier & Chen's MLP stems, LN-Linear-GELU-LN-Linear on the embedded input
  and Linear-GELU-LN after the final norm, their LayerNorms with ``stem_eps`` (1e-12).
- ``output``: a Linear head ("linear"), or logits tied to the code embeddings plus a learned
  bias per position and code ("tied", BERT-style, as in MaskGIT, Chang et al. 2022, and
  Besnier & Chen 2023).

Dropout, off by default and active only in train mode (the authors' training code, for the
training presets): ``attn_dropout`` on the attention probabilities, ``proj_dropout`` after the
attention's output projection, ``mlp_dropout`` after the MLP's GELU and after its output
(timm's ``Block(attn_drop, proj_drop)``, as MAR, Li et al. 2024, and eMIGM train, sets all
three; Besnier & Chen 2023 attention and MLP), ``stem_dropout`` before each Linear of the
stems (Besnier & Chen 2023).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Checkpointable, ConfigDict
from ..errors import MaskgenError
from ..schedules import get_schedule
from ..onednn import linear
from ..validate import flag, integer, number, pair, text


@dataclass
class GeneratorConfig(ConfigDict):
    codebook_size: int = 256
    grid: tuple[int, int] = (8, 8)
    num_classes: int = 10
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    uncond: str = "null"  # "null": learned no-class row; "mask": the mask embedding (002)
    timestep_input: bool = False  # explicit timestep model (003)
    time_schedule: str = "linear"  # the schedule whose time t an explicit-timestep model reads
    outputs: int = 0  # logits per position; 0: one per code (a generator), 1: a Token-Critic (004)
    class_position: str = "first"  # the class slot before the tokens, or "last" (Besnier & Chen 2023)
    norm_eps: float = 1e-5  # LayerNorm eps of the blocks and the final norm
    stems: bool = False  # MLP stems after the embeddings and before the output (Besnier & Chen 2023)
    stem_eps: float | None = None  # the stems' LayerNorm eps; stems only (None: 1e-12)
    output: str = "linear"  # "linear" head, or "tied": h @ code embeddings^T + a bias per position and code
    attn_dropout: float = 0.0  # on the attention probabilities, train mode only
    proj_dropout: float = 0.0  # after the attention's output projection
    mlp_dropout: float = 0.0  # after the MLP's GELU and after its output
    stem_dropout: float = 0.0  # before each Linear of the stems (stems only)

    def __post_init__(self) -> None:
        # Types first: a string width would otherwise reach ``width % heads`` below and fail
        # with Python's "not all arguments converted during string formatting".
        o = "GeneratorConfig"
        self.grid = tuple(integer(f"grid[{i}]", g, 1, o) for i, g in enumerate(pair("grid", self.grid, o)))  # JSON gives lists
        for name, low in (("codebook_size", 1), ("num_classes", 1), ("width", 1), ("depth", 1), ("heads", 1), ("outputs", 0)):
            setattr(self, name, integer(name, getattr(self, name), low, o))
        self.mlp_ratio = number("mlp_ratio", self.mlp_ratio, 1.0, owner=o)
        flag("timestep_input", self.timestep_input, o)
        check_time_schedule(self.time_schedule, o)
        if self.uncond not in ("null", "mask"):
            raise MaskgenError(f"unknown uncond mode {self.uncond!r}; choose null or mask")
        if self.width % self.heads:
            raise MaskgenError(f"width {self.width} is not divisible by heads {self.heads}")
        for name, value, choices in (("class_position", self.class_position, ("first", "last")), ("output", self.output, ("linear", "tied"))):
            if text(name, value, o) not in choices:
                raise MaskgenError(f"invalid {o}: unknown {name} {value!r}; choose {' or '.join(choices)}")
        self.norm_eps = number("norm_eps", self.norm_eps, 0.0, lo_open=True, owner=o)
        flag("stems", self.stems, o)
        if self.stems:
            self.stem_eps = number("stem_eps", 1e-12 if self.stem_eps is None else self.stem_eps, 0.0, lo_open=True, owner=o)
        elif self.stem_eps is not None:
            raise MaskgenError(f"invalid {o}: stem_eps applies only with stems")
        check_dropout(self, o)
        if self.stem_dropout and not self.stems:
            raise MaskgenError(f"invalid {o}: stem_dropout applies only with stems")
        if self.output == "tied" and self.outputs:
            raise MaskgenError(f"invalid {o}: a tied output predicts the codes; outputs={self.outputs} needs the linear head")

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def mask_id(self) -> int:
        return self.codebook_size


def check_time_schedule(name: object, owner: str) -> None:
    """A config's ``time_schedule``: a schedule ``get_schedule`` knows, refused in one line when a
    config file names another (an explicit-timestep model would fail on its first step)."""
    text("time_schedule", name, owner)
    try:
        get_schedule(name)  # type: ignore[arg-type]
    except MaskgenError as e:
        raise MaskgenError(f"invalid {owner}: time_schedule: {e}") from None


def check_dropout(config, owner: str) -> None:
    """Check every ``*_dropout`` field of ``config`` is a probability in [0, 1)."""
    for name in ("attn_dropout", "proj_dropout", "mlp_dropout", "stem_dropout"):
        if hasattr(config, name):
            setattr(config, name, number(name, getattr(config, name), 0.0, 1.0, hi_open=True, owner=owner))


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` in train mode with p > 0, else ``x`` itself (inference stays untouched)."""
    return F.dropout(x, p, True) if training and p else x


def layer_norm(width: int, eps: float) -> nn.LayerNorm:
    """A LayerNorm whose eps is part of the layout: a published checkpoint trained with 1e-6
    or 1e-12 drifts measurably under torch's 1e-5."""
    return nn.LayerNorm(width, eps=eps)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.attn_dropout, self.proj_dropout = attn_dropout, proj_dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    @property
    def value_weight(self) -> Tensor:
        """[D, D]: the rows of the fused projection that make the values."""
        return self.qkv.weight[2 * self.qkv.out_features // 3 :]

    def forward(
        self, x: Tensor, values: Tensor | None = None, weights: bool = False, key_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Output, and the head-averaged attention probabilities [B, S, S] if ``weights``.
        ``values`` [B, S, D] is added to the attention values (TOAST's top-down offset); ``x``
        may then be one row [1, S, D] that every row shares (a blank canvas), whose queries and
        keys are computed once. ``key_mask`` [B, S] (True: attend) hides padding keys (the
        MAE encoder's ragged rows)."""
        n, d = x.shape[1:]
        q, k, v = linear(x, self.qkv).chunk(3, dim=-1)
        if values is not None:
            v = v + values
        b = len(v)
        q, k = q.expand(b, -1, -1), k.expand(b, -1, -1)
        q, k, v = (z.view(b, n, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        probs = None
        keys = None if key_mask is None else key_mask[:, None, None, :]
        if weights:
            att = q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5
            att = (att if keys is None else att.masked_fill(~keys, float("-inf"))).softmax(-1)
            y, probs = dropout(att, self.attn_dropout, self.training) @ v, att.mean(1)
        else:
            p = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)
        return dropout(linear(y.transpose(1, 2).reshape(b, n, d), self.proj), self.proj_dropout, self.training), probs


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)), MLP = Linear-GELU-Linear
    (the linear layers through ``maskgen.onednn.linear``: oneDNN, GELU fused, at inference on CPU)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, eps: float = 1e-5, attn_dropout: float = 0.0, proj_dropout: float = 0.0, mlp_dropout: float = 0.0):
        super().__init__()
        self.norm1 = layer_norm(width, eps)
        self.attn = Attention(width, heads, attn_dropout, proj_dropout)
        self.mlp_dropout = mlp_dropout
        self.norm2 = layer_norm(width, eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(
        self, x: Tensor, values: Tensor | None = None, weights: bool = False, key_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        y, probs = self.attn(self.norm1(x), values, weights, key_mask)
        x = x + y
        fc1, _, fc2 = self.mlp  # the GELU module is the exact one linear(gelu=True) applies
        h = dropout(linear(self.norm2(x), fc1, gelu=True), self.mlp_dropout, self.training)
        return x + dropout(linear(h, fc2), self.mlp_dropout, self.training), probs


@dataclass
class ForwardPass:
    """What one pass of the generator gives: logits, and on request its internals."""

    logits: Tensor  # [B, N, K]
    hidden: Tensor | None = None  # final states [B, 1 + N, D] (the output's input), class slot at ``class_position``
    saliency: Tensor | None = None  # [B, N] attention each token receives in the last block (mean 1)
    layer_io: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # (input, output) per block

    def rows(self, n: int) -> "ForwardPass":
        """The first ``n`` rows (the strong branch of a batched pass)."""
        cut = lambda z: None if z is None else z[:n]  # noqa: E731
        return ForwardPass(self.logits[:n], cut(self.hidden), cut(self.saliency), [(a[:n], b[:n]) for a, b in self.layer_io])


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def schedule_time(timestep_input: bool, time_schedule: str, gamma: Tensor | float, batch: int, device: torch.device | str) -> Tensor | None:
    """The time t of ``time_schedule`` with gamma(t) = ``gamma`` ([B] or a float) for an
    explicit-timestep model (003 ETM), None for an implicit one: shared by every generator."""
    if not timestep_input:
        return None
    t = get_schedule(time_schedule).inverse(gamma).float()
    return t.expand(batch).to(device) if t.dim() == 0 else t.to(device)


class MaskedTransformer(nn.Module, Checkpointable):
    """Bidirectional transformer mapping (tokens, labels[, t]) to logits over the K codes."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.codebook_size + 1, c.width)  # row K is [MASK]
        self.cls_emb = nn.Embedding(c.num_classes + 1, c.width)  # row C is "no class"
        self.pos_emb = nn.Parameter(torch.zeros(1, c.num_tokens + 1, c.width))
        if c.timestep_input:
            self.time_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        if c.stems:
            w, eps = c.width, c.stem_eps
            self.input_mlp = nn.Sequential(layer_norm(w, eps), nn.Linear(w, w), nn.GELU(), layer_norm(w, eps), nn.Linear(w, w))
        drops = dict(attn_dropout=c.attn_dropout, proj_dropout=c.proj_dropout, mlp_dropout=c.mlp_dropout)
        self.blocks = nn.ModuleList(Block(c.width, c.heads, c.mlp_ratio, c.norm_eps, **drops) for _ in range(c.depth))
        self.norm = layer_norm(c.width, c.stem_eps if c.stems else c.norm_eps)
        if c.stems:
            self.output_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.GELU(), layer_norm(c.width, c.stem_eps))
        if c.output == "tied":
            self.out_bias = nn.Parameter(torch.zeros(c.num_tokens, c.codebook_size))
        else:
            self.head = nn.Linear(c.width, c.outputs or c.codebook_size)
        self.sha256: str | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.trunc_normal_(self.pos_emb, std=0.02)

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    def time_input(self, gamma: Tensor | float, batch: int, device: torch.device | str) -> Tensor | None:
        """What an explicit-timestep model reads for a masked fraction ``gamma`` ([B] or a
        float): the time t of its own training schedule with gamma(t) = ``gamma``, so a
        sampler, a critic or a fine-tuning run with another schedule still feeds it the time
        it was trained on. None for an implicit-timestep model."""
        return schedule_time(self.config.timestep_input, self.config.time_schedule, gamma, batch, device)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def token_slots(self) -> slice:
        """Where the N tokens sit in the sequence (the class slot is the other one)."""
        return slice(1, None) if self.config.class_position == "first" else slice(0, -1)

    def embed(self, tokens: Tensor, labels: Tensor | None, t: Tensor | None = None) -> Tensor:
        """Input sequence: the class slot and the N token embeddings (in ``class_position``
        order), plus positions, plus t for an explicit-timestep model, through the input stem."""
        c = self.config
        if labels is None:
            cls = self.tok_emb.weight[c.mask_id].expand(len(tokens), -1)
        else:
            cls = self.cls_emb(labels)
        if labels is not None and c.uncond == "mask":
            # 002: the unconditional input is the mask embedding in the class slot.
            mask_row = self.tok_emb.weight[c.mask_id].expand_as(cls)
            cls = torch.where((labels == c.num_classes)[:, None], mask_row, cls)
        parts = [cls[:, None], self.token_embeddings(tokens)]
        x = torch.cat(parts if c.class_position == "first" else parts[::-1], dim=1) + self.pos_emb
        if c.timestep_input:
            if t is None:
                raise MaskgenError("this generator was trained with explicit timesteps: pass t")
            per_token = t.dim() == 2  # [B, N]: a time per token (a joint model's modalities); the class slot reads their mean
            if per_token:
                slot = t.mean(1, keepdim=True)
                t = torch.cat([slot, t] if c.class_position == "first" else [t, slot], dim=1)
            emb = self.time_mlp(timestep_embedding(t.flatten(), c.width)).view(*t.shape, -1)
            x = x + (emb if per_token else emb[:, None])
        return self.stem(self.input_mlp, x) if c.stems else x

    def token_embeddings(self, tokens: Tensor) -> Tensor:
        """The embeddings [B, N, D] of the token ids, before positions are added (a one-step
        student perturbs them with Gaussian noise: ``models/one_step.py``)."""
        return self.tok_emb(tokens)

    def stem(self, mlp: nn.Sequential, x: Tensor) -> Tensor:
        """A stem, with ``stem_dropout`` before each of its Linear layers in train mode."""
        for layer in mlp:
            x = layer(dropout(x, self.config.stem_dropout, self.training) if isinstance(layer, nn.Linear) else x)
        return x

    def forward(self, tokens: Tensor, labels: Tensor | None, t: Tensor | None = None, top_down: list[Tensor] | None = None) -> Tensor:
        """Logits [B, N, K] for tokens [B, N] (ids in 0..K), labels [B] (0..C, or None: blank), t [B], [B, N] or None."""
        return self.run(tokens, labels, t, top_down).logits

    def run(
        self,
        tokens: Tensor,
        labels: Tensor | None,
        t: Tensor | None = None,
        top_down: list[Tensor] | None = None,
        hidden: bool = False,
        saliency: bool = False,
        layer_io: bool = False,
        values: Sequence[Tensor] | None = None,
    ) -> ForwardPass:
        """One pass; ``hidden``, ``saliency`` and ``layer_io`` ask for internals (see ``ForwardPass``).
        ``top_down`` (features) or ``values`` (offsets already projected; any sequence, e.g. one
        that makes each layer's offset when the pass reaches it): one per layer, [B, S, D];
        with ``values``, ``tokens`` may be one row [1, N] shared by the B rows (TOAST's blank
        canvas), so that the first layer's row-independent work (embedding, its norm, queries,
        keys and unsteered values) runs once instead of B times."""
        if top_down is not None and values is not None:
            raise MaskgenError("give top_down features or projected values, not both")
        steer = top_down if top_down is not None else values
        if steer is not None and len(steer) != len(self.blocks):
            raise MaskgenError(f"{'top_down' if top_down is not None else 'values'} has {len(steer)} features for {len(self.blocks)} layers")
        x = self.embed(tokens, labels, t)
        io, probs = [], None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            offset = None if steer is None else steer[i]
            if top_down is not None:
                # TOAST: the top-down feature goes through this layer's own value weights (no
                # bias, so a zero feature leaves the pass unchanged)
                offset = F.linear(offset, block.attn.value_weight)
            y, p = block(x, offset, weights=saliency and i == last)
            if layer_io:
                io.append((x, y))
            x, probs = y, p if p is not None else probs
        h = self.norm(x)
        if self.config.stems:
            h = self.stem(self.output_mlp, h)
        tokens = self.token_slots
        # SAG's aggregation: average over heads, sum over queries; each query row sums to 1.
        received = probs.sum(1)[:, tokens] if probs is not None else None
        return ForwardPass(self.output(h[:, tokens]), h if hidden else None, received, io)

    def output(self, h: Tensor) -> Tensor:
        """Logits [B, N, K] from the token states [B, N, D]."""
        if self.config.output == "linear":
            return linear(h, self.head)
        # tied: scores against the code embeddings only; the mask row is never a prediction
        return h @ self.tok_emb.weight[: self.config.codebook_size].T + self.out_bias

    # -- persistence: ``save`` and ``load`` come from Checkpointable -----------------------------
    checkpoint_name = "generator"
    checkpoint_kind = "generator"
    config_class = GeneratorConfig
