"""The unified masked-token objective (002 Eq. 7) and the masking it is built on.

    L(x0) = E_{t ~ U[t_min, 1]} w(t) E_{q(x_t | x0)} [ sum_{i masked} -log p(x0^i | x_t) ]

The pieces (002 Table 1, DESIGN.md): the schedule gamma(t); the masking distribution,
exact count ceil(N gamma(t)) without replacement (MaskGIT, MAR) or independent
Bernoulli(gamma(t)) per token (MDM); the weight w(t) = 1 or the ELBO weight
gamma'(t)/gamma(t); time truncation t_min (002: 0.2); condition dropout to the
unconditional input for classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MaskgenError
from ..schedules import Schedule, get_schedule
from .context import StepContext

MASKINGS = ("count", "bernoulli")
WEIGHTINGS = ("one", "elbo")


def mask_positions(gamma: Tensor, scores: Tensor, masking: str) -> Tensor:
    """Boolean mask [B, N] given gamma [B] and uniform scores [B, N].

    ``count`` masks exactly ceil(N gamma) positions (at least one), the lowest scores;
    ``bernoulli`` masks each position independently where score < gamma.
    """
    n = scores.shape[1]
    if masking == "count":
        k = torch.ceil(gamma.double() * n).long().clamp(1, n)
        ranks = scores.argsort(dim=1).argsort(dim=1)
        return ranks < k[:, None]
    if masking == "bernoulli":
        return scores < gamma[:, None].to(scores.dtype)
    raise MaskgenError(f"unknown masking {masking!r}; choose from {', '.join(MASKINGS)}")


def mask_and_drop(
    tokens: Tensor, labels: Tensor, ctx: StepContext, schedule: Schedule, cond_drop: float, null_class: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Per image t ~ U(0, 1), ceil(N gamma(t)) masked positions, and labels dropped to the null
    class with probability ``cond_drop``: (t [B] float64, mask [B, N], labels)."""
    n = tokens.shape[1]
    t = ctx.draw(torch.rand, dtype=torch.float64)
    mask = mask_positions(schedule.gamma(t), ctx.draw(torch.rand, n), "count").to(tokens.device)
    drop = ctx.draw(torch.rand).to(tokens.device) < cond_drop
    return t, mask, torch.where(drop, torch.full_like(labels, null_class), labels)


@dataclass
class MaskedObjectiveConfig:
    schedule: str = "cosine"
    masking: str = "count"
    weighting: str = "one"
    t_min: float = 0.0
    cond_drop: float = 0.1
    label_smoothing: float = 0.0
    batch_time: bool = False  # one t per batch (002's code) instead of one per image

    def __post_init__(self) -> None:
        get_schedule(self.schedule)
        if self.masking not in MASKINGS:
            raise MaskgenError(f"unknown masking {self.masking!r}; choose from {', '.join(MASKINGS)}")
        if self.weighting not in WEIGHTINGS:
            raise MaskgenError(f"unknown weighting {self.weighting!r}; choose from {', '.join(WEIGHTINGS)}")
        if not 0.0 <= self.t_min < 1.0:
            raise MaskgenError(f"t_min must be in [0, 1), got {self.t_min}")
        if not 0.0 <= self.cond_drop <= 1.0:
            raise MaskgenError(f"cond_drop must be in [0, 1], got {self.cond_drop}")


class MaskedTokenObjective:
    """002 Eq. 7 for a generator ``model(tokens, labels, t) -> logits``; loss on masked positions only.

    With w(t)=1 the per-image loss is the mean cross-entropy over its masked positions
    (MaskGIT's convention); with the ELBO weight it is gamma'/gamma * sum / N (002 Eq. 4).
    """

    def __init__(self, config: MaskedObjectiveConfig, mask_id: int, null_class: int, timestep_input: bool = False):
        self.config = config
        self.schedule: Schedule = get_schedule(config.schedule)
        self.mask_id = mask_id
        self.null_class = null_class
        self.timestep_input = timestep_input

    def sample_times(self, ctx: StepContext) -> Tensor:
        c = self.config
        u = ctx.draw(torch.rand, dtype=torch.float64) if not c.batch_time else torch.rand(1, generator=ctx.rng, dtype=torch.float64).expand(ctx.rows.stop - ctx.rows.start)
        return c.t_min + (1.0 - c.t_min) * u

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        tokens, labels = batch
        c = self.config
        b, n = tokens.shape
        t = self.sample_times(ctx)
        gamma = self.schedule.gamma(t)
        mask = mask_positions(gamma, ctx.draw(torch.rand, n), c.masking).to(tokens.device)
        drop = ctx.draw(torch.rand).to(tokens.device) < c.cond_drop
        labels = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        inputs = torch.where(mask, torch.full_like(tokens, self.mask_id), tokens)

        t_in = t.float().to(tokens.device) if self.timestep_input else None
        logits = model(inputs, labels, t_in)
        ce = F.cross_entropy(
            logits.float().reshape(b * n, -1), tokens.reshape(-1), reduction="none", label_smoothing=c.label_smoothing
        ).view(b, n)
        masked_ce = (ce * mask).sum(dim=1)
        count = mask.sum(dim=1)
        if c.weighting == "one":
            per_image = masked_ce / count.clamp_min(1)
        else:
            per_image = self.schedule.elbo_weight(t).float().to(ce.device) * masked_ce / n
        loss = per_image.mean()
        with torch.no_grad():
            acc = ((logits.argmax(-1) == tokens) & mask).sum() / count.sum().clamp_min(1)
        return loss, {"loss": loss.item(), "acc": acc.item(), "mask_frac": (count.float().mean() / n).item()}
