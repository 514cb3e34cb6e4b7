"""Reveal counts: how many positions stay masked after each step of an ordered fill rule
(confidence, Halton order), given the schedule.

The rules that rank positions (by confidence, or by a fixed order) keep the m highest and
leave the rest masked; ``masked_after`` says how many. Three conventions, each a codebase's:

- ``maskgit`` (the default): floor(M gamma(s)) stay masked, at least one fewer than now and at
  least one until the last step. The official MaskGIT decoder (Chang et al. 2022) and MAR
  (Li et al. 2024) count this way; M is the region to fill (N from a blank canvas).
- ``valeoai-v1``: the valeoai MaskGIT reproduction (Besnier & Chen 2023, v1.0) allocates the
  reveals per step in proportion to v_i = gamma(i / (T - 1)), i = 0..T-1, rounded, each at
  least 1, the last step taking what remains: at N = 256, T = 8 with arccos it reveals
  [1, 18, 26, 32, 38, 43, 48, 50] where ``maskgit`` reveals [21, 21, 21, 23, 25, 28, 35, 82].
- ``halton``: the Halton scheduler (Besnier et al. 2025) reveals, after step i,
  max(i + 1, int(M (1 - arccos((i + 1)/T) / (pi/2)))) positions in all, with the arithmetic in
  float32 as its code does (the int() truncation then lands where its code's does, also when
  M (1 - ...) is an integer in exact arithmetic). It is tied to the arccos schedule.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import MaskgenError

COUNTS = ("maskgit", "valeoai-v1", "halton")


def check_counts(counts: str, schedule: str, steps: int) -> None:
    """One line for a count rule that cannot run with this schedule or number of steps."""
    if counts not in COUNTS:
        raise MaskgenError(f"unknown reveal counts {counts!r}; choose from {', '.join(COUNTS)}")
    if counts == "halton" and schedule != "arccos":
        raise MaskgenError(f"the halton reveal counts are Halton-MaskGIT's arccos rule; use --schedule arccos, not {schedule}")
    if counts == "valeoai-v1" and steps < 2:
        raise MaskgenError("the valeoai-v1 reveal counts need at least 2 steps (its allocation divides by T - 1)")


def proportional_reveals(schedule, steps: int, size: int) -> list[int]:
    """valeoai v1's per-step reveal counts for ``size`` positions: v_i = gamma(i / (T - 1)),
    round(v_i / sum(v) size), zeros set to 1, the last step takes size - sum of the others.
    The times come from a float32 ``linspace(1, 0, T)`` and the shares are rounded in float32,
    as in its code."""
    r = torch.linspace(1.0, 0.0, steps)  # float32, as in the original
    v = schedule.gamma(1.0 - r.double()).float()
    counts = (v / v.sum() * size).round()
    counts[counts == 0] = 1
    counts[-1] += size - counts.sum()
    return [int(c) for c in counts]


def halton_revealed(index: int, steps: int, size: Tensor) -> Tensor:
    """Halton-MaskGIT's cumulative revealed count after step ``index`` for region sizes [B]."""
    r = 1 - torch.arccos(torch.tensor((index + 1) / steps)) / (math.pi * 0.5)  # float32
    return torch.maximum(torch.full_like(size, index + 1), (r * size.float()).long())


def masked_after(counts: str, step, size: Tensor, remaining: Tensor) -> Tensor:
    """[B] positions left masked after ``step`` (not the last one: every rule fills all there),
    for regions of ``size`` [B] of which ``remaining`` [B] are masked now."""
    if counts == "maskgit":
        keep = torch.floor(size.to(torch.float64) * step.gamma_s).long()
        return torch.clamp(torch.minimum(keep, remaining - 1), min=1)
    if counts == "halton":
        return torch.clamp(size - halton_revealed(step.index, step.total, size), min=0)
    if counts == "valeoai-v1":
        reveals = torch.tensor(
            [proportional_reveals(step.schedule, step.total, int(m))[step.index] for m in size.tolist()], device=size.device
        )
        return torch.clamp(remaining - reveals, min=0)
    raise MaskgenError(f"unknown reveal counts {counts!r}; choose from {', '.join(COUNTS)}")


def official_masked_counts(size: int, steps: int, schedule) -> list[int]:
    """The masked counts after each step that MAR's and official MaskGIT's decoders compute
    for ``size`` positions from a blank canvas: floor(size gamma(s)), clamped to at least 1 and
    at most one fewer than before (also at the last step, where the clamp gives 1: what MAR's
    linear CFG ramp reads, 1 + (cfg - 1)(N - mask_len)/N)."""
    out, masked = [], size
    for i in range(steps):
        s = (steps - i - 1) / steps
        keep = math.floor(size * float(schedule.gamma(s)))
        masked = max(1, min(masked - 1, keep))
        out.append(masked)
    return out
