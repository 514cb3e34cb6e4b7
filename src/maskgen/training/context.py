"""What the trainer hands an objective each step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    phase: str | None = None  # which phase of an objective trained in phases (``Trainer``), else None

    def draw(self, fn, *shape_tail, **kw) -> torch.Tensor:
        """Call a torch random function ``fn(global_batch, *shape_tail, generator=rng)`` and keep this rank's rows."""
        return fn(self.global_batch, *shape_tail, generator=self.rng, **kw)[self.rows]

    def draw_shared(self, fn: Callable[..., torch.Tensor], *shape_tail: int, **kw: Any) -> torch.Tensor:
        """Call ``fn(1, *shape_tail, generator=rng)``: one draw the whole batch shares (one t per
        batch, eMIGM's and MAR's code), identical on every rank."""
        return fn(1, *shape_tail, generator=self.rng, **kw)

    def head_noise(self, device: torch.device) -> Any:
        """The diffusion head's noise source for this step: a generator seeded by one draw of
        ``rng`` plus this process's first row (``training/continuous.py``)."""
        seed = int(torch.randint(2**62, (1,), generator=self.rng)) + self.rows.start
        return torch.Generator(device=device).manual_seed(seed)


@dataclass
class ReplayContext(StepContext):
    """A ``StepContext`` that hands out given draws instead of random ones, in the order the
    objective asks for them: a test feeds another implementation's draws (its t, mask scores,
    label drop) and compares losses draw for draw. ``head`` is what ``head_noise`` returns
    (e.g. ``diffusion_head.GivenNoise``). Each given tensor must have the asked shape."""

    given: list[torch.Tensor] = field(default_factory=list)
    head: Any = None

    def _next(self, shape: tuple[int, ...], dtype: torch.dtype | None) -> torch.Tensor:
        if not self.given:
            raise AssertionError(f"ReplayContext: no given draw left for shape {shape}")
        value = self.given.pop(0)
        if tuple(value.shape) != shape:
            raise AssertionError(f"ReplayContext: given draw has shape {tuple(value.shape)}, the objective asks {shape}")
        return value.to(dtype) if dtype is not None else value

    def draw(self, fn, *shape_tail, **kw) -> torch.Tensor:
        return self._next((self.global_batch, *shape_tail), kw.get("dtype"))[self.rows]

    def draw_shared(self, fn, *shape_tail, **kw) -> torch.Tensor:
        return self._next((1, *shape_tail), kw.get("dtype"))

    def head_noise(self, device: torch.device) -> Any:
        return self.head


class Objective(Protocol):
    """A training loss: ``objective(model, batch, ctx) -> (loss, metrics)``.

    ``batch`` is this rank's ``(inputs, labels)``; ``loss`` is the mean over this rank's rows
    (DDP averages gradients over ranks, which gives the global mean).
    """

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]: ...
