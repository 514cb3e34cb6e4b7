"""The Halton order (Besnier et al. 2025, "Halton Scheduler for Masked Generative Image
Transformer"): positions revealed in a fixed low-discrepancy order over the grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ...errors import MaskgenError
from ..counts import COUNTS, check_counts
from ..draw import uniform
from ..fill import FillRule, reveal_highest
from ..registry import FILLS, PieceSpec, choice, option
from .confidence import counts_field


@FILLS.register
@dataclass
class HaltonSpec(PieceSpec):
    """The Halton order (Besnier et al. 2025): a fixed low-discrepancy reveal order."""

    kind: ClassVar[str] = "halton"
    about: ClassVar[str] = "Halton order"
    rank: ClassVar[float] = 2
    menu: ClassVar[float] = 1
    search: ClassVar[dict] = {}
    search_rank: ClassVar[float] = 1
    counts: str = counts_field()  # reveal counts per step (counts.py); "halton": its code's own
    roll: bool = field(default=False, metadata=option("halton_roll", "roll the order by a random shift per image"))  # its code's randomize

    def __post_init__(self) -> None:
        choice("reveal counts", self.counts, COUNTS)
        if not isinstance(self.roll, bool):
            raise MaskgenError(f"halton roll must be true or false, got {self.roll!r}")

    def check_run(self, steps: int, schedule: str) -> None:
        check_counts(self.counts, schedule, steps)

    def build(self, source):
        return HaltonFill(self.counts, self.roll)


def radical_inverse(i: int, base: int) -> float:
    """The i-th point of the van der Corput sequence in ``base`` (i = 1: 1/base), as the
    exact fraction n / base^k rounded once to a float (a sum of rounded digit terms can land an
    ulp below k/g and floor onto the cell before, as on 9x9 and 18x18 grids)."""
    numerator, denominator = 0, 1
    while i:
        i, digit = divmod(i, base)
        numerator, denominator = numerator * base + digit, denominator * base
    return numerator / denominator


def halton_order(grid: tuple[int, int]) -> Tensor:
    """Every position of an h x w grid once, in the order of the 2-D Halton sequence (base 2
    for the row, base 3 for the column, from the points 1/2 and 1/3), repeated cells dropped
    keeping the first: Besnier et al. 2025, "Halton Scheduler for Masked Generative Image
    Transformer", Sec. 3. Returns flat indices row * w + col, [h w]."""
    h, w = grid
    order: list[int] = []
    seen: set[int] = set()
    i = 1
    while len(order) < h * w:
        cell = math.floor(radical_inverse(i, 2) * h) * w + math.floor(radical_inverse(i, 3) * w)
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
        i += 1
    return torch.tensor(order, dtype=torch.long)


class HaltonFill(FillRule):
    """Halton order (Besnier et al. 2025): positions are revealed in a fixed low-discrepancy
    order over the grid, spread evenly from the first step, instead of by confidence; the
    number revealed per step follows ``counts`` (``counts.py``: MaskGIT's by default, or the
    Halton code's own). Every position is drawn, only the next slice of the order is kept,
    so it works with any token draw and guidance, and on continuous tokens too. ``roll``
    shifts the order cyclically by a uniform random amount per image, drawn once at the
    first step (the Halton code's ``randomize``)."""

    name = "halton"

    def __init__(self, counts: str = "maskgit", roll: bool = False):
        self.counts, self.roll = counts, roll

    def __call__(self, model, p, step, generator):
        n = p.masked.shape[1]
        device = p.masked.device
        if self.roll and "halton_shift" not in p.run:
            p.run["halton_shift"] = (uniform((len(p.masked),), generator, device) * n).long().clamp_(max=n - 1)
        if step.last:
            return model.place(p.x, p.masked, p.candidates)
        order = halton_order(tuple(model.grid)).to(device)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n, device=device)
        rank = rank.expand(p.masked.shape)
        if self.roll:  # torch.roll(order, k): the cell at rank j moves to rank j + k (mod N)
            rank = (rank + p.run["halton_shift"][:, None]) % n
        priority = -rank.to(torch.float32)  # earlier in the order: revealed first
        return reveal_highest(model, p, step, priority, self.counts)

    def settings(self):
        return {"fill": self.name, "counts": self.counts, "roll": self.roll}
