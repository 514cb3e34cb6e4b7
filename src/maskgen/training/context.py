"""What the trainer hands an objective each step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


@dataclass
class StepContext:
    """One optimisation step, seen from one process.

    ``rng`` is seeded from (seed, step) alone and is identical on every rank. An objective
    draws its noise for the *global* batch (``global_batch`` rows) and keeps ``rows``,
    this rank's share, so a run gives the same result on any number of processes.
    """

    step: int
    rng: torch.Generator
    rows: slice
    global_batch: int

    def draw(self, fn, *shape_tail, **kw) -> torch.Tensor:
        """Call a torch random function ``fn(global_batch, *shape_tail, generator=rng)`` and keep this rank's rows."""
        return fn(self.global_batch, *shape_tail, generator=self.rng, **kw)[self.rows]


class Objective(Protocol):
    """A training loss: ``objective(model, batch, ctx) -> (loss, metrics)``.

    ``batch`` is this rank's ``(inputs, labels)``; ``loss`` is the mean over this rank's rows
    (DDP averages gradients over ranks, which gives the global mean).
    """

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]: ...
