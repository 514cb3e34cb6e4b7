"""The unified masked-token objective (eMIGM, You et al. 2025, Eq. 7) and its masking.

    L(x0) = E_{t ~ U[t_min, 1]} w(t) E_{q(x_t | x0)} [ sum_{i masked} -log p(x0^i | x_t) ]

The pieces (eMIGM Table 1): the schedule gamma(t); the masking distribution, exact count
ceil(N gamma(t)) without replacement (MaskGIT, MAR) or independent Bernoulli(gamma(t))
per token (MDM); the weight w(t); time truncation t_min (eMIGM: 0.2); condition dropout
to the unconditional input for classifier-free guidance.

Weightings (``weighting``), each the per-image loss before the batch mean:

- ``one``: w(t) = 1, the sum of the masked tokens' cross-entropy divided by N (eMIGM Eq. 7,
  Discrete Interpolants Eq. 4; the constant 1/N keeps the loss a per-token scale).
  MaskGIT and MAR divide by the batch's masked count instead: the same up to a constant
  factor when t is drawn per image.
- ``elbo``: w(t) = gamma'(t) / gamma(t) on the same sum / N (eMIGM Eq. 4, Discrete
  Interpolants Eq. 3).
- ``per-image``: the mean over each image's own masked tokens. This weights an image by
  1 / (N gamma(t)), which with the linear schedule *is* the ELBO weight; the first
  reference generator (``configs/maskgit-fmnist.yaml``) was trained with it, so it stays,
  under its own name.
- ``batch-masked-mean``: not a per-image loss: the sum over the *batch's* masked tokens
  divided by their number, as MAR's (Li et al. 2024) and eMIGM's code compute it. Under one
  t per batch (``batch_time``) every image masks about as many tokens, and it is ``one`` times
  N / (masked count): a weight 1 / gamma(t) per batch. Under DistributedDataParallel or
  gradient accumulation each part's mean is averaged, as those codes do per GPU.
- ``all-tokens``: the mean cross-entropy over every position, masked or visible (valeoai
  Maskgit-pytorch v1.0 code, Besnier & Chen 2023): visible tokens are scored too.

Time truncation (``t_sampling``): ``uniform`` draws t ~ U[t_min, 1] as eMIGM's paper writes
it (the default); ``clamp`` draws t = max(U[0, 1], t_min) as eMIGM's released code does,
a point mass of t_min at t_min; ``truncnorm`` draws t from a normal of mean 1 and scale 0.25
truncated to [t_min, 1], as MAR's code draws its mask ratio (t_min 0.7, with the linear
schedule so that t is the ratio). ``t_max`` < 1 truncates the noisy end (Discrete
Interpolants' code draws its time in [1e-3, 1], t_max 0.999 in maskgen's direction).

Masking ``batch-bernoulli`` (eMIGM's code): one Bernoulli(gamma(t)) pattern of N positions
per batch, redrawn with t until it masks at least 2; every image masks that many positions,
uniformly at random. Its schedule ``emigm-exp`` (training only) is the code's
1 - exp(-5 p), p = (1 - 1e-3) t + 1e-3, not normalised to reach 1 at t = 1.

Conditional coupling (``coupling`` = R > 0; Discrete Interpolants, Hu & Ommer 2025,
Sec. 3.6 Eq. 8 and Appendix D, after Gat et al.'s Discrete Flow Matching): a set I of
positions follows the null scheduler, keeping its clean token at every t, and the rest the
usual schedule; see ``keep_positions`` and ``mask_free_positions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MaskgenError
from ..schedules import FunctionSchedule, Schedule, get_schedule
from ..validate import flag, number, text
from .context import StepContext

MASKINGS = ("count", "bernoulli", "batch-bernoulli")
WEIGHTINGS = ("one", "elbo", "per-image", "batch-masked-mean", "all-tokens")
T_SAMPLINGS = ("uniform", "clamp", "truncnorm")
TRUNCNORM_LOC, TRUNCNORM_SCALE = 1.0, 0.25  # MAR's mask-ratio distribution
EMIGM_EPS = 1e-3


def _emigm_exp() -> Schedule:
    p = lambda t: (1.0 - EMIGM_EPS) * t + EMIGM_EPS  # noqa: E731
    return FunctionSchedule("emigm-exp", lambda t: 1.0 - torch.exp(-5.0 * p(t)), lambda t: 5.0 * (1.0 - EMIGM_EPS) * torch.exp(-5.0 * p(t)))


TRAINING_SCHEDULES = {"emigm-exp": _emigm_exp}


def training_presets() -> tuple[str, ...]:
    """The shipped training presets: ``training/presets/<name>.yaml``, each the ``train``
    options that reproduce one authors' codebase's objective (``maskgen train --preset``)."""
    return tuple(sorted(p.stem for p in (Path(__file__).parent / "presets").glob("*.yaml")))


def training_schedule(name: str) -> Schedule:
    """A sampling schedule (``schedules.py``) or a training-only one (``TRAINING_SCHEDULES``:
    an authors' code's masking rate that does not reach 1 at t = 1, which no sampler may use)."""
    return TRAINING_SCHEDULES[name]() if name in TRAINING_SCHEDULES else get_schedule(name)


def truncated_normal(u: Tensor, low: float, high: float = 1.0, loc: float = TRUNCNORM_LOC, scale: float = TRUNCNORM_SCALE) -> Tensor:
    """The inverse CDF of N(loc, scale^2) truncated to [low, high] at uniforms ``u`` (float64):
    MAR's (Li et al. 2024) code's mask-ratio distribution with low 0.7."""
    u = u.double()
    a, b = (torch.tensor([low, high], dtype=torch.float64) - loc) / scale
    cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
    return (loc + scale * torch.special.ndtri(cdf_a + u * (cdf_b - cdf_a))).clamp(low, high)


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


def keep_positions(ratio_max: float, n: int, ctx: StepContext) -> Tensor:
    """Conditional coupling's set I [B, N] (Discrete Interpolants Eq. 8): per image a kept
    ratio r ~ U[0, R], and floor(r N) positions, uniformly at random, that are never masked.

    003 only says I is "controlled by a ratio of data length L"; drawing the ratio per image
    up to R (rather than fixing |I| = R L) keeps images with almost nothing given in every
    batch, so the model still learns to generate from scratch while also seeing the
    inpainting-like inputs coupling is for (003 App. D: "better unmask the data when
    encountering a specific ratio of masked data")."""
    r = ctx.draw(torch.rand, dtype=torch.float64) * ratio_max
    k = torch.floor(r * n).long()
    ranks = ctx.draw(torch.rand, n).argsort(dim=1).argsort(dim=1)
    return ranks < k[:, None]


def mask_free_positions(gamma: Tensor, scores: Tensor, masking: str, kept: Tensor) -> Tensor:
    """``mask_positions`` over the positions outside ``kept`` only: the standard interpolant
    on them (``count``: ceil(N_free gamma), at least one), the null scheduler on ``kept``."""
    free = ~kept
    if masking == "count":
        n_free = free.sum(dim=1)
        k = torch.minimum(torch.ceil(gamma.double() * n_free).long().clamp(min=1), n_free)
        ranks = torch.where(kept, 2.0, scores).argsort(dim=1).argsort(dim=1)  # kept rank last
        return ranks < k[:, None]
    return mask_positions(gamma, scores, masking) & free


@dataclass
class MaskedObjectiveConfig:
    schedule: str = "cosine"
    masking: str = "count"
    weighting: str = "one"
    t_min: float = 0.0
    cond_drop: float = 0.1
    label_smoothing: float = 0.0
    batch_time: bool = False  # one t per batch (eMIGM's code) instead of one per image
    t_sampling: str = "uniform"  # t ~ U[t_min, 1], or "clamp": max(U[0, 1], t_min)
    coupling: float = 0.0  # conditional coupling: max kept ratio R (003 Eq. 8), 0 = off
    t_max: float = 1.0  # uniform t in [t_min, t_max]
    preset: str | None = None  # the training preset these values came from (recorded, checked on resume)

    def __post_init__(self) -> None:
        o = "MaskedObjectiveConfig"
        for name in ("schedule", "masking", "weighting", "t_sampling"):
            text(name, getattr(self, name), o)
        self.t_min = number("t_min", self.t_min, 0.0, 1.0, hi_open=True, owner=o)
        self.cond_drop = number("cond_drop", self.cond_drop, 0.0, 1.0, owner=o)
        self.label_smoothing = number("label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True, owner=o)
        self.coupling = number("coupling", self.coupling, 0.0, 1.0, hi_open=True, owner=o)
        self.t_max = number("t_max", self.t_max, 0.0, 1.0, lo_open=True, owner=o)
        flag("batch_time", self.batch_time, o)
        training_schedule(self.schedule)
        if self.masking not in MASKINGS:
            raise MaskgenError(f"unknown masking {self.masking!r}; choose from {', '.join(MASKINGS)}")
        if self.weighting not in WEIGHTINGS:
            raise MaskgenError(f"unknown weighting {self.weighting!r}; choose from {', '.join(WEIGHTINGS)}")
        if self.t_sampling not in T_SAMPLINGS:
            raise MaskgenError(f"unknown t sampling {self.t_sampling!r}; choose from {', '.join(T_SAMPLINGS)}")
        if self.preset is not None and text("preset", self.preset, o) not in training_presets():
            raise MaskgenError(f"unknown training preset {self.preset!r}; choose from {', '.join(training_presets())}")
        if self.t_max <= self.t_min:
            raise MaskgenError(f"t_max {self.t_max} must exceed t_min {self.t_min}")
        if self.t_max < 1.0 and self.t_sampling != "uniform":
            raise MaskgenError(f"t_max truncates the uniform t sampling, not {self.t_sampling!r}")
        if self.masking == "batch-bernoulli" and not self.batch_time:
            raise MaskgenError("masking batch-bernoulli draws one pattern per batch: it needs batch_time (one t per batch)")
        if self.masking == "batch-bernoulli" and self.coupling:
            raise MaskgenError("masking batch-bernoulli masks the same count in every image; coupling keeps a different count clean in each")


class MaskedObjective:
    """eMIGM Eq. 7 with the per-token loss left open: draws t, the mask and the condition
    dropout, asks ``token_loss`` for a loss at every position, and weights the masked ones
    as the module docstring says. The discrete generator's objective (cross-entropy,
    ``MaskedTokenObjective``) and the continuous one (the diffusion head's denoising loss,
    ``training/continuous.py``) differ only in ``token_loss``."""

    def __init__(self, config: MaskedObjectiveConfig, null_class: int, timestep_input: bool = False):
        if timestep_input and config.schedule in TRAINING_SCHEDULES:
            raise MaskgenError(f"schedule {config.schedule} is training-only; an explicit-timestep model needs a schedule its sampler can invert")
        self.config = config
        self.schedule: Schedule = training_schedule(config.schedule)
        self.null_class = null_class

    def sample_times(self, ctx: StepContext) -> Tensor:
        c = self.config
        u = ctx.draw(torch.rand, dtype=torch.float64) if not c.batch_time else ctx.draw_shared(torch.rand, dtype=torch.float64).expand(ctx.rows.stop - ctx.rows.start)
        if c.t_sampling == "clamp":
            return u.clamp(min=c.t_min)
        if c.t_sampling == "truncnorm":
            return truncated_normal(u, c.t_min)
        return c.t_min + (c.t_max - c.t_min) * u

    def shared_pattern(self, n: int, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """``batch-bernoulli``: (t [B], masked count [B]) from one Bernoulli(gamma(t)) pattern of
        ``n`` positions, t and pattern redrawn until it masks at least 2 (eMIGM's code)."""
        for _ in range(10_000):
            t = self.sample_times(ctx)
            count = (ctx.draw_shared(torch.rand, n)[0] < self.schedule.gamma(t[:1]).to(torch.float32)).sum()
            if count >= min(2, n):
                return t, count.expand(len(t))
        raise MaskgenError("batch-bernoulli masking drew fewer than 2 masked positions 10000 times; raise t_min")

    def corrupt(self, n: int, labels: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor, Tensor]:
        """(t [B] float64, mask [B, N] bool, labels with condition dropout to the null class).
        Coupled positions are never in ``mask``, so ``weigh`` gives them no loss."""
        c = self.config
        if c.masking == "batch-bernoulli":
            t, count = self.shared_pattern(n, ctx)
            ranks = ctx.draw(torch.rand, n).argsort(dim=1).argsort(dim=1)
            drop = ctx.draw(torch.rand).to(labels.device) < c.cond_drop
            return t, (ranks < count[:, None]).to(labels.device), torch.where(drop, torch.full_like(labels, self.null_class), labels)
        t = self.sample_times(ctx)
        scores = ctx.draw(torch.rand, n)
        drop = ctx.draw(torch.rand).to(labels.device) < c.cond_drop
        if c.coupling:  # drawn after the rest, so a run without coupling draws as before
            mask = mask_free_positions(self.schedule.gamma(t), scores, c.masking, keep_positions(c.coupling, n, ctx))
        else:
            mask = mask_positions(self.schedule.gamma(t), scores, c.masking)
        return t, mask.to(labels.device), torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def weigh(self, token_loss: Tensor, mask: Tensor, t: Tensor) -> Tensor:
        """The batch mean of the per-image losses: the masked positions' ``token_loss``
        [B, N] summed and weighted by ``weighting``."""
        n = mask.shape[1]
        if self.config.weighting == "all-tokens":
            return token_loss.mean()
        if self.config.weighting == "batch-masked-mean":
            return torch.where(mask, token_loss, 0.0).sum() / mask.sum().clamp_min(1)
        masked = torch.where(mask, token_loss, 0.0).sum(dim=1)
        if self.config.weighting == "per-image":
            per_image = masked / mask.sum(dim=1).clamp_min(1)
        elif self.config.weighting == "one":
            per_image = masked / n
        else:
            per_image = self.schedule.elbo_weight(t).float().to(masked.device) * masked / n
        return per_image.mean()

    def token_loss(self, model: nn.Module, x0: Tensor, mask: Tensor, labels: Tensor, t: Tensor, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        """Loss [B, N] (float32) of predicting ``x0`` where ``mask``; metrics of its own."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        x0, labels = batch
        n = x0.shape[1]
        t, mask, labels = self.corrupt(n, labels, ctx)
        per_token, metrics = self.token_loss(model, x0, mask, labels, t, ctx)
        loss = self.weigh(per_token, mask, t)
        return loss, {"loss": loss.item(), **metrics, "mask_frac": (mask.sum(dim=1).float().mean() / n).item()}


class MaskedTokenObjective(MaskedObjective):
    """eMIGM Eq. 7 for a generator ``model(tokens, labels, t) -> logits``: cross-entropy on
    the masked positions only."""

    def __init__(self, config: MaskedObjectiveConfig, mask_id: int, null_class: int, timestep_input: bool = False):
        super().__init__(config, null_class, timestep_input)
        self.mask_id = mask_id
        self.timestep_input = timestep_input

    def token_loss(self, model, x0, mask, labels, t, ctx):
        b, n = x0.shape
        inputs = torch.where(mask, torch.full_like(x0, self.mask_id), x0)
        t_in = t.float().to(x0.device) if self.timestep_input else None
        logits = model(inputs, labels, t_in)
        ce = F.cross_entropy(
            logits.float().reshape(b * n, -1), x0.reshape(-1), reduction="none", label_smoothing=self.config.label_smoothing
        ).view(b, n)
        with torch.no_grad():
            acc = ((logits.argmax(-1) == x0) & mask).sum() / mask.sum().clamp_min(1)
        return ce, {"acc": acc.item()}
