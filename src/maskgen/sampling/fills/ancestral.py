"""eMIGM's ancestral rule (You et al. 2025, Eq. 6): each masked token revealed independently at
random, with probability (gamma_t - gamma_s) / gamma_t."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...errors import MaskgenError
from ..draw import uniform
from ..fill import FillRule, Step
from ..registry import FILLS, PieceSpec, choice, option


@FILLS.register
@dataclass
class AncestralSpec(PieceSpec):
    """eMIGM's ancestral rule (You et al. 2025, Eq. 6): random positions. Three conventions
    of eMIGM (You et al. 2025) code's ``sample_tokens``, off by default (the paper's rule):
    ``equal_counts``: every image reveals as many as image 0's Bernoulli draws give, at its
    lowest uniforms; ``reveal_one``: a step where no image reveals a token reveals one random
    masked position per image (one more uniform per image); ``time_grid``: "exact"
    t = (T - i)/T, or "linspace": the code's float32 linspace(1, 1e-5, T + 1), on which the
    guidance interval is tested too."""

    kind: ClassVar[str] = "ancestral"
    about: ClassVar[str] = "eMIGM"
    rank: ClassVar[float] = 1
    menu: ClassVar[float] = 3
    search: ClassVar[dict] = {}
    search_rank: ClassVar[float] = 2
    equal_counts: bool = field(default=False, metadata=option("ancestral_equal_counts", "every image reveals image 0's count, at its lowest uniforms (eMIGM code)"))
    reveal_one: bool = field(default=False, metadata=option("ancestral_reveal_one", "a step revealing nothing batch-wide reveals one random position per image (eMIGM code)"))
    time_grid: str = field(default="exact", metadata=option("ancestral_time_grid", "exact t = (T - i)/T (default) or linspace (eMIGM code: linspace(1, 1e-5, T + 1))"))

    def __post_init__(self) -> None:
        for name in ("equal_counts", "reveal_one"):
            if not isinstance(getattr(self, name), bool):
                raise MaskgenError(f"ancestral {name} must be true or false, got {getattr(self, name)!r}")
        choice("ancestral time grid", self.time_grid, ("exact", "linspace"))

    def build(self, source):
        return AncestralFill(self.equal_counts, self.reveal_one, self.time_grid)


TIME_GRIDS = ("exact", "linspace")
LINSPACE_END = 1e-5  # eMIGM's sample_tokens: torch.linspace(1.0, eps, T + 1), eps = 1e-5


class AncestralFill(FillRule):
    """MDM ancestral step (eMIGM, You et al. 2025, Eq. 6): each masked token is revealed independently with
    probability (gamma_t - gamma_s) / gamma_t at a random position, not by confidence.

    Three conventions of eMIGM's code (You et al. 2025, ``sample_tokens``), each off by default:
    ``equal_counts``: every image reveals as many tokens as image 0's Bernoulli draws give, k,
    namely its k masked positions with the lowest uniforms (the code permutes row 0's
    uniforms over each image's masked positions); images then depend on their batch.
    ``reveal_one``: when no image of the batch reveals a token at a step (before the last),
    each reveals one masked position, the floor(u M)-th in ascending position order of its
    M, with u one more uniform per image drawn after the reveal uniforms (its
    ``torch.randint(0, M, (1,))``). ``time_grid``: ``exact`` runs t = (T - i)/T;
    ``linspace`` the code's float32 torch.linspace(1, 1e-5, T + 1), which also moves the
    guidance interval's test on s; the last step reveals everything either way.
    """

    name = "ancestral"

    def __init__(self, equal_counts: bool = False, reveal_one: bool = False, time_grid: str = "exact"):
        if time_grid not in TIME_GRIDS:
            raise MaskgenError(f"unknown ancestral time grid {time_grid!r}; choose from {', '.join(TIME_GRIDS)}")
        self.equal_counts, self.reveal_one, self.time_grid = equal_counts, reveal_one, time_grid

    def step(self, index, steps, schedule, size=None):
        if self.time_grid == "exact":
            return super().step(index, steps, schedule, size)
        grid = torch.linspace(1.0, LINSPACE_END, steps + 1)  # float32, as the code's
        return Step(index, steps, float(grid[index]), float(grid[index + 1]), schedule, size)

    def __call__(self, model, p, step, generator):
        masked, device = p.masked, p.masked.device
        gt = step.gamma_t
        prob = 1.0 if step.last or gt <= 0 else (gt - step.gamma_s) / gt
        u = uniform(tuple(masked.shape), generator, device)
        reveal = masked & (u < prob)
        if step.last:
            return model.place(p.x, reveal, p.candidates)
        if self.equal_counts:  # image 0's count, the lowest uniforms of each image's masked positions
            ranks = u.masked_fill(~masked, float("inf")).argsort(dim=1).argsort(dim=1)
            reveal = masked & (ranks < reveal[0].sum())
        if self.reveal_one and not reveal.any():
            count = masked.sum(1)
            pick = (uniform((len(masked),), generator, device) * count).floor().long()
            reveal = masked & (masked.long().cumsum(1) - 1 == torch.minimum(pick, count - 1)[:, None])
        return model.place(p.x, reveal, p.candidates)

    def settings(self):
        return {"fill": self.name, "equal_counts": self.equal_counts, "reveal_one": self.reveal_one, "time_grid": self.time_grid}
