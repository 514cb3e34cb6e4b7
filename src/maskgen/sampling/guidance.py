"""Guidance: a strong and a weak branch combined in log-probability space (000 Eq. 5, 6).

    log p_guided = weak + (1 + s)(strong - weak) = strong + s (strong - weak)

s = 0 gives the strong (conditional) branch, s = -1 the weak one. Several guidances
combine additively, strong + sum_g s_g (strong - weak_g), so each one alone is recovered
when the others' scales are 0. The scale follows a schedule (constant; a linear ramp
from 0 at the first step to s at the last, as in valeoai/Maskgit-pytorch; or MAR's ramp by
the revealed fraction after the step, s (N - mask_len)/N with MAR's integer count) and can be limited to a time
interval (lo, hi] of the step's end time s (002 Sec. 5.3, "CFG interval").
A guidance whose scale is 0 at a step costs no extra forward pass.

Weak branches differ in what they need. A *batched* one (CFG) only changes the inputs, so
it runs in the same forward pass as the strong branch. A *dependent* one is computed from
the strong pass: blur guidance smooths its logits (no extra pass), SAG re-masks the tokens
its attention finds salient and self-guidance feeds its hidden states to a TOAST module;
both then run one more pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import MaskgenError
from ..models.transformer import ForwardPass
from .counts import official_masked_counts

RAMPS = ("constant", "linear", "revealed")


@dataclass
class GuidanceScale:
    scale: float = 0.0
    ramp: str = "constant"
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.ramp not in RAMPS:
            raise MaskgenError(f"unknown guidance ramp {self.ramp!r}; choose from {', '.join(RAMPS)}")
        if self.interval is not None:
            lo, hi = self.interval
            if not 0.0 <= lo < hi <= 1.0:
                raise MaskgenError(f"guidance interval must satisfy 0 <= lo < hi <= 1, got ({lo}, {hi}]")
            self.interval = (float(lo), float(hi))

    def at(self, step) -> float:
        # eMIGM's code's rule lo < s <= hi on the step's end time s (its paper prints a
        # closed interval); s = (T - i - 1) / T is exact at the grid points, so an interval
        # edge on the grid (0.3 at T = 10) is hit
        if self.interval is not None and not (self.interval[0] < step.s <= self.interval[1]):
            return 0.0
        if self.ramp == "linear":
            return self.scale * (step.index / (step.total - 1) if step.total > 1 else 1.0)
        if self.ramp == "revealed":
            # MAR (Li et al. 2024) code: cfg 1 + (cfg - 1)(N - mask_len)/N with its integer
            # mask_len after the step (clamped to >= 1, also at the last step); s = cfg - 1
            if step.size is None:
                return self.scale * (1.0 - step.gamma_s)
            mask_len = official_masked_counts(step.size, step.total, step.schedule)[step.index]
            return self.scale * (step.size - mask_len) / step.size
        return self.scale

    def settings(self) -> dict:
        return {"scale": self.scale, "ramp": self.ramp, "interval": list(self.interval) if self.interval else None}


class Guidance:
    """A weak branch. Batched ones override ``weak_inputs``, dependent ones ``weak_logits``."""

    name = "guidance"
    batched = False  # the weak input runs in the strong branch's forward pass
    needs: frozenset[str] = frozenset()  # internals of the strong pass: "hidden", "saliency"
    discrete_only = True  # reads logits or token ids of a discrete generator

    def __init__(self, scale: GuidanceScale):
        self.scale = scale

    def check(self, model) -> None:
        """Refuse, in one line, a model this guidance cannot act on."""
        if self.discrete_only and model.continuous:
            raise MaskgenError(f"{self.name} guidance needs a discrete-token generator, not {type(model).__name__}")

    def weak_inputs(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def weak_logits(self, model, x: Tensor, labels: Tensor, gamma: Tensor, strong: ForwardPass) -> tuple[Tensor, int]:
        """Weak logits [B, N, K] from the strong pass, and the network rows they cost.
        ``model`` is the sampler's denoiser (``denoiser.DiscreteDenoiser``); ``gamma`` [B]
        the masked fraction it turns into the network's time."""
        raise NotImplementedError

    def settings(self) -> dict:
        return {"guidance": self.name, **self.scale.settings()}


class ClassifierFreeGuidance(Guidance):
    """Weak branch: the same tokens with the unconditional class input (Ho & Salimans; 002, 003 Eq. 6)."""

    name = "cfg"
    batched = True
    discrete_only = False

    def __init__(self, scale: GuidanceScale, null_class: int):
        super().__init__(scale)
        self.null_class = null_class

    def weak_inputs(self, x, labels):
        return x, torch.full_like(labels, self.null_class)


def gaussian_blur_matrix(grid: tuple[int, int], sigma: float) -> Tensor:
    """[N, N] row-stochastic matrix of a separable Gaussian blur over the token grid
    (kernel truncated at 3 sigma and renormalised at the borders)."""
    def axis(n: int) -> Tensor:
        i = torch.arange(n, dtype=torch.float64)
        w = torch.exp(-0.5 * ((i[:, None] - i[None]) / sigma) ** 2) * ((i[:, None] - i[None]).abs() <= max(1.0, 3 * sigma))
        return w / w.sum(1, keepdim=True)

    h, w = grid
    return torch.kron(axis(h), axis(w)).float()


class BlurGuidance(Guidance):
    """Weak branch: the strong logits blurred over the token grid (000 Sec. 3.2, Table 2).

    A Gaussian blur of VQ token ids means nothing, but a blur of the predicted logits is a
    spatial smoothing of the prediction, the discrete analogue of blur guidance (Lee et al.).
    It costs no extra forward pass.
    """

    name = "blur"

    def __init__(self, scale: GuidanceScale, grid: tuple[int, int], sigma: float = 1.0):
        super().__init__(scale)
        if sigma <= 0:
            raise MaskgenError(f"blur sigma must be > 0, got {sigma}")
        self.sigma = sigma
        self.matrix = gaussian_blur_matrix(tuple(grid), sigma)

    def weak_logits(self, model, x, labels, gamma, strong):
        m = self.matrix.to(strong.logits.device, strong.logits.dtype)
        return torch.einsum("nm,bmk->bnk", m, strong.logits), 0

    def settings(self):
        return {**super().settings(), "sigma": self.sigma}


class SelfAttentionGuidance(Guidance):
    """SAG (Hong et al.; 000 Table 2) for masked tokens: adversarial masking by attention.

    The tokens that receive more than the average attention in the strong pass's last
    block (head mean, summed over queries, > 1: SAG's threshold) are the salient ones; the
    weak branch re-masks those already decoded and runs the network again.
    """

    name = "sag"
    needs = frozenset({"saliency"})

    def __init__(self, scale: GuidanceScale, mask_id: int, threshold: float = 1.0):
        super().__init__(scale)
        self.mask_id = mask_id
        self.threshold = threshold

    def weak_logits(self, model, x, labels, gamma, strong):
        salient = strong.saliency > self.threshold
        weak_x = torch.where(salient, torch.full_like(x, self.mask_id), x)
        return model.logits(weak_x, labels, gamma), len(x)

    def settings(self):
        return {**super().settings(), "threshold": self.threshold}


class SelfGuidance(Guidance):
    """000 Eq. 6: the weak branch is the semantically smoothed prediction of a TOAST
    module fed the strong pass's hidden states (one extra pass: NFE 2T)."""

    name = "self"
    needs = frozenset({"hidden"})

    def __init__(self, scale: GuidanceScale, module: nn.Module):
        super().__init__(scale)
        self.module = module

    def weak_logits(self, model, x, labels, gamma, strong):
        return self.module.weak_logits(model.network, strong.hidden, labels, model.time(gamma)), len(x)

    def settings(self):
        sha = getattr(self.module, "sha256", None)
        return {**super().settings(), "module_sha256": sha}


def combine(strong: Tensor, weaks: list[Tensor], scales: list[float]) -> Tensor:
    """strong + sum_g s_g (strong - weak_g), all log-probabilities."""
    if len(weaks) == 1:
        # one fused op instead of three [B, N, K] temporaries
        return torch.lerp(weaks[0], strong, 1.0 + scales[0])
    out = strong
    for weak, s in zip(weaks, scales):
        out = out + s * (strong - weak)
    return out
