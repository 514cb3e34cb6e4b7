"""The loop's contract with a model: what ``loop.Sampler`` needs, and the discrete generator's
implementation of it.

The one sampling loop works on any model that provides the members of ``Denoiser``. A
discrete generator (``DiscreteDenoiser`` below) is one implementation; a continuous MAE +
diffusion-head generator, a joint image+segmentation generator or an imported published
model is another class with the same members, never a second loop.

State. The loop carries a state ``x`` for a batch of B sequences of N positions (token ids
[B, N] for discrete tokens; latent vectors for continuous ones) and asks the model which
positions are masked. Fill rules only decide *where* a candidate is placed
(``place``) or a position masked again (``remask``); they never look inside a token.

One step t -> s (t = 1 all masked):

1. ``forward(x, labels, gamma, needs)``: one network pass over a batch that stacks the strong
   rows and the weak rows of batched guidances (CFG: the same x with the null class). ``gamma``
   [rows] is the masked fraction at t; the model turns it into its own time convention (an
   explicit-timestep generator reads the t of its training schedule). ``needs`` asks for
   internals that dependent guidances read ("hidden", "saliency"). Returns a pass object with
   ``rows(n)`` (the strong rows) and ``prediction(guided)``.
2. ``split(pass, k, guided)``: the k row groups' predictions (logits for discrete tokens:
   log-probabilities up to a constant per position, which neither the guided combination
   nor the draw depends on; z vectors for continuous ones).
3. ``draw(strong, weaks, scales, draw, generator, last, temperature)``: combine the guided
   branches and draw one candidate per position, with a confidence per position (the
   candidate's log-probability; what the confidence rule ranks). Discrete: weak + (1 + s)
   (strong - weak) in log-probability space (self-guidance, Hur et al. 2024, Eq. 5), summed
   over guidances, then the ``TokenDraw``. Continuous: CFG applied to the diffusion head's
   noise prediction at every head step, no confidence (NaN), and the candidates may be
   lazy: drawn by ``place`` only where a rule reveals (``continuous.py``).
4. ``place(x, where, candidates)`` and ``remask(x, where)``; a rule passes the candidates
   it was given to ``place`` untouched.

Also: ``num_tokens``, ``num_classes`` (label C is unconditional), ``null_class``,
``mask_id`` and ``grid`` where they exist, ``continuous`` (tokens are latent vectors drawn
by a diffusion head: ``continuous.ContinuousDenoiser``), ``blank(batch, device)`` (the
all-masked state), ``masked(x)`` ([B, N] bool), ``check_draw(draw)`` (refuse a draw the model
cannot do: a ``TokenDraw`` for discrete tokens, ``HeadSampling`` for continuous ones),
``reset_counts(batch)`` and ``counts()`` (costs besides the network's rows, per image, e.g.
the diffusion head's ``nfe_head``), ``device`` and ``network`` (the underlying module, for
guidances and components that attach to it, e.g. a TOAST module).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.transformer import ForwardPass, MaskedTransformer
from .draw import Noise, TokenDraw
from .guidance import combine
from .registry import denoiser_for


class Denoiser(Protocol):
    num_tokens: int
    num_classes: int
    null_class: int
    continuous: bool

    def blank(self, batch: int, device: torch.device) -> Tensor: ...
    def masked(self, x: Tensor) -> Tensor: ...
    def forward(self, x: Tensor, labels: Tensor, gamma: Tensor, needs: frozenset[str] = frozenset()): ...
    def split(self, out, groups: int, guided: bool) -> list[Tensor]: ...
    def draw(self, strong: Tensor, weaks: list[Tensor], scales: list[float], draw: TokenDraw, generator: Noise, last: bool, temperature: float | None = None) -> tuple[Tensor, Tensor]: ...
    def place(self, x: Tensor, where: Tensor, candidates: Tensor) -> Tensor: ...
    def remask(self, x: Tensor, where: Tensor) -> Tensor: ...
    def check_draw(self, draw) -> None: ...
    def reset_counts(self, batch: int) -> None: ...
    def counts(self) -> dict[str, float]: ...


@denoiser_for(MaskedTransformer.checkpoint_kind)
class DiscreteDenoiser:
    """``Denoiser`` over a ``MaskedTransformer``: token ids with mask id K, logits over K codes."""

    continuous = False

    def __init__(self, network: MaskedTransformer):
        self.network = network
        c = network.config
        self.num_tokens, self.num_classes, self.null_class = c.num_tokens, c.num_classes, network.null_class
        self.mask_id, self.grid = c.mask_id, tuple(c.grid)
        self.codebook_size = c.codebook_size

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def blank(self, batch: int, device: torch.device) -> Tensor:
        return torch.full((batch, self.num_tokens), self.mask_id, dtype=torch.long, device=device)

    def masked(self, x: Tensor) -> Tensor:
        return x == self.mask_id

    def check_state(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.num_tokens:
            raise MaskgenError(f"token grids must be [B, {self.num_tokens}], got {list(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > self.mask_id):
            raise MaskgenError(f"token ids must lie in 0..{self.mask_id} ({self.mask_id} = [MASK])")

    def time(self, gamma: Tensor) -> Tensor | None:
        return self.network.time_input(gamma, len(gamma), gamma.device)

    def forward(self, x: Tensor, labels: Tensor, gamma: Tensor, needs: frozenset[str] = frozenset()) -> ForwardPass:
        t = self.time(gamma)
        if needs:
            return self.network.run(x, labels, t, hidden="hidden" in needs, saliency="saliency" in needs)
        return ForwardPass(self.network(x, labels, t))

    def logits(self, x: Tensor, labels: Tensor | None, gamma: Tensor) -> Tensor:
        """One plain pass (a dependent guidance's weak branch)."""
        return self.network(x, labels, self.time(gamma))

    def split(self, out: ForwardPass, groups: int, guided: bool) -> list[Tensor]:
        """The row groups' logits, not normalised even when guided: logits are log-probabilities
        up to a constant per position, the guided combination of such constants is again one
        (strong + sum_g s_g (strong - weak_g) is affine with weights summing to 1), and the
        token draw normalises what it draws from. Two log-softmaxes over [B, N, K] saved."""
        return list(out.logits.float().chunk(groups))

    def combine(self, strong: Tensor, weaks: list[Tensor], scales: list[float]) -> Tensor:
        """Guided log-probabilities (up to a per-position constant): strong + sum_g s_g (strong - weak_g)."""
        return combine(strong, weaks, scales) if weaks else strong

    def draw(self, strong, weaks, scales, draw, generator, last, temperature=None):
        logp = self.combine(strong, weaks, scales)
        if temperature is not None:
            draw = dataclasses.replace(draw, temperature=temperature)
        return draw(logp, generator, last)

    def most_likely(self, strong: Tensor, weaks: list[Tensor], scales: list[float], draw: TokenDraw) -> Tensor:
        """[B, N] the most likely code under the draw's distribution (a rule that argmaxes what
        remains: Discrete Interpolants' released ``max_last``)."""
        return draw.log_probs(self.combine(strong, weaks, scales)).argmax(-1)

    def check_draw(self, draw) -> None:
        if not isinstance(draw, TokenDraw):
            raise MaskgenError(f"a discrete-token generator draws with a TokenDraw, not {type(draw).__name__} (head sampler settings need a continuous-token generator)")

    def reset_counts(self, batch: int) -> None:
        """Nothing to count besides the network's rows."""

    def counts(self) -> dict[str, float]:
        return {}

    def place(self, x: Tensor, where: Tensor, candidates: Tensor) -> Tensor:
        return torch.where(where, candidates, x)

    def remask(self, x: Tensor, where: Tensor) -> Tensor:
        return torch.where(where, torch.full_like(x, self.mask_id), x)
