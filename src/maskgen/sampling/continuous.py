"""The loop's contract (``denoiser.py``) for a continuous-token generator: latents drawn by a
diffusion head from the transformer's conditioning vectors z (MAR, Li et al. 2024; eMIGM,
You et al. 2025, Sec. 5.2).

State. One tensor [B, N, d] of latents in which a masked position holds NaN: NaN is the
continuous mask id, so ``torch.cat`` of states, ``masked`` and the fill rules work as they
do on token ids, and the loop stays one loop. A finished sample has no NaN left.

Forward. One batched transformer pass over the strong rows and the weak rows (CFG: the
same latents with the unconditional class) gives z at every position.

Draw. The head's sampler (``HeadSampling``: DDPM or DPM-Solver) runs per position with
guidance applied to the head's noise prediction at every head step: with cond and uncond
z at the same position and the same x, eps = strong + sum_g s_g (strong - weak_g), i.e.
MAR's u + cfg (c - u) with cfg = 1 + s; the variance output is the strong branch's. The
draw is lazy: ``draw`` returns a ``HeadDraw`` and the head runs in ``place``, only at the
positions the fill rule reveals (the head is the expensive part; MAR too samples only the
positions it reveals). There is no confidence: ``draw`` returns NaN, and the rules that
rank by it refuse a continuous model.

Cost. ``nfe_head`` (``counts``) is the head passes per image: at each step in which an
image receives tokens, the sampler's head passes, a batched cond + uncond head pass
counting 2 (the loop's NFE convention). The transformer's passes stay in ``nfe``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.continuous import ContinuousGenerator
from .head_sampler import HeadSampling, sample_tokens
from .draw import ImageNoise, Noise, PositionNoise, TokenDraw
from .guidance import combine
from .registry import denoiser_for


@dataclass
class ConditionPass:
    """What one transformer pass gives: z [rows, N, D] and which positions were masked."""

    z: Tensor
    masked: Tensor

    def rows(self, n: int) -> "ConditionPass":
        return ConditionPass(self.z[:n], self.masked[:n])


@dataclass
class HeadDraw:
    """Candidates not yet drawn: the guided head sampler, run by ``ContinuousDenoiser.place``
    at the positions a fill rule chooses."""

    strong: Tensor  # z [B, N, D]
    weaks: list[Tensor]  # z [B, N, D] per guidance
    scales: list[float]
    how: HeadSampling
    generator: Noise


@denoiser_for(ContinuousGenerator.checkpoint_kind)
class ContinuousDenoiser:
    """``Denoiser`` over a ``ContinuousGenerator``: NaN-masked latents, z, the diffusion head."""

    continuous = True
    mask_id = None  # no mask id: a masked latent is NaN

    def __init__(self, network: ContinuousGenerator):
        self.network = network
        c = network.config
        self.num_tokens, self.num_classes, self.null_class = c.num_tokens, c.num_classes, network.null_class
        self.grid, self.token_dim = tuple(c.grid), c.token_dim
        self.head_passes = torch.zeros(0)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def blank(self, batch: int, device: torch.device) -> Tensor:
        return torch.full((batch, self.num_tokens, self.token_dim), float("nan"), device=device)

    def masked(self, x: Tensor) -> Tensor:
        return x.isnan().any(-1)

    def check_state(self, x: Tensor) -> None:
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.num_tokens, self.token_dim):
            raise MaskgenError(f"latent grids must be [B, {self.num_tokens}, {self.token_dim}], got {list(x.shape)}")

    def check_draw(self, draw) -> None:
        """Refuse, in one line, a token draw a diffusion head cannot do."""
        if isinstance(draw, TokenDraw):
            raise MaskgenError("a continuous-token generator draws tokens with its diffusion head: give head sampler settings (HeadSampling), not a token draw")
        if not isinstance(draw, HeadSampling):
            raise MaskgenError(f"a continuous-token generator needs HeadSampling to draw tokens, got {type(draw).__name__}")

    def reset_counts(self, batch: int) -> None:
        self.head_passes = torch.zeros(batch)

    def counts(self) -> dict[str, float]:
        return {"nfe_head": float(self.head_passes.mean()) if len(self.head_passes) else 0.0}

    def forward(self, x: Tensor, labels: Tensor, gamma: Tensor, needs: frozenset[str] = frozenset()) -> ConditionPass:
        if needs:
            raise MaskgenError(f"a continuous-token generator has no {', '.join(sorted(needs))} for a guidance to read")
        masked = self.masked(x)
        t = self.network.time_input(gamma, len(gamma), gamma.device)
        return ConditionPass(self.network.condition(x, masked, labels, t), masked)

    def split(self, out: ConditionPass, groups: int, guided: bool) -> list[Tensor]:
        return list(out.z.chunk(groups))

    def draw(self, strong, weaks, scales, draw, generator, last, temperature=None):
        """A lazy ``HeadDraw`` and NaN confidence (a head gives no log-probability)."""
        self.check_draw(draw)
        if temperature is not None:
            draw = dataclasses.replace(draw, temperature=temperature)
        confidence = torch.full(strong.shape[:2], float("nan"), device=strong.device)
        return HeadDraw(strong, list(weaks), list(scales), draw, generator), confidence

    def guided_eps(self, strong: Tensor, weaks: list[Tensor], scales: list[float]):
        """eps_fn(x [M, d], t [M]) -> head output [M, 2d] for conditions z [M, D]: one head
        pass over the strong and weak z on the same x, guidance on the eps half."""
        k, net, z = 1 + len(weaks), self.network.head, torch.cat([strong, *weaks])
        # DiffusionHead.at computes once what no head step changes; any other head module runs as is
        head = net.at(z, copies=k) if hasattr(net, "at") else (lambda x, t: net(x.repeat(k, 1), t.repeat(k), z))

        def eps_fn(x: Tensor, t: Tensor) -> Tensor:
            out = head(x, t).float()
            if k == 1:
                return out
            d = x.shape[1]
            branches = out.chunk(k)
            eps = combine(branches[0][:, :d], [b[:, :d] for b in branches[1:]], scales)
            return torch.cat([eps, branches[0][:, d:]], dim=1)

        return eps_fn

    def sample(self, candidates: HeadDraw, where: Tensor) -> Tensor:
        """Latents [M, d] drawn at the M positions ``where`` [B, N]; counts the head passes."""
        pick = lambda z: z[where]  # noqa: E731
        eps_fn = self.guided_eps(pick(candidates.strong), [pick(w) for w in candidates.weaks], candidates.scales)
        calls = 0

        def counted(x: Tensor, t: Tensor) -> Tensor:
            nonlocal calls
            calls += 1
            return eps_fn(x, t)

        noise = candidates.generator
        if isinstance(noise, ImageNoise):
            noise = PositionNoise(noise, where)
        tokens, _ = sample_tokens(counted, (int(where.sum()), self.token_dim), self.network.noise, candidates.how, noise)
        if len(self.head_passes) == len(where):
            self.head_passes += where.any(1).cpu() * calls * (1 + len(candidates.weaks))
        return tokens

    def place(self, x: Tensor, where: Tensor, candidates: HeadDraw | Tensor) -> Tensor:
        if isinstance(candidates, Tensor):
            return torch.where(where[..., None], candidates, x)
        # The head runs even where nothing is revealed (an empty batch, no cost): every image's
        # noise stream must advance alike whichever images share its batch.
        x = x.clone()
        x[where] = self.sample(candidates, where).to(x.device, x.dtype)
        return x

    def remask(self, x: Tensor, where: Tensor) -> Tensor:
        return x.masked_fill(where[..., None], float("nan"))
