"""Token-Critic sampling (Lezama et al. 2022, Alg. 2) and refinement (Sec. 4.3) as a fill rule.

At a step t -> s the generator's (guided) prediction is drawn at every masked position,
with the token temperature annealed linearly, a * t + b (t = 1 at the first step; t is
the paper's t/T). This temperature replaces the draw's own (a spec refuses a draw
temperature other than 1 with this rule, so the two never compound). The
critic scores the whole grid, and the ``ceil(N gamma(s))`` lowest-scored positions are
masked for the next step, previously accepted tokens included, so a decision can be
revoked. Before ranking, selection noise K * u * t with u ~ U[-0.5, 0.5] per token is
added to the critic's probability that a token is real. The last step masks nothing.

Refinement starts from finished tokens: ``start_from`` masks the ``ceil(N gamma(1))``
lowest-scored ones, then the usual steps follow. With the schedule ``0.6 * cosine`` over
9 steps this is Token-Critic Sec. 4.3: 60% re-sampled at the first step, then fewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from ...errors import MaskgenError
from ..draw import Noise, uniform
from ..fill import FillRule, Step
from ..registry import FILLS, PieceSpec, Uniform, finite, option


@FILLS.register
@dataclass
class CriticSpec(PieceSpec):
    """Token-Critic (Lezama et al. 2022, Alg. 2): selection noise K and token temperature a t + b."""

    kind: ClassVar[str] = "critic"
    about: ClassVar[str] = "Token-Critic"
    rank: ClassVar[float] = 4
    menu: ClassVar[float] = 4
    search: ClassVar[dict] = {"noise": Uniform(0.25, 2.0, 0.2)}
    search_rank: ClassVar[float] = 4
    owns_temperature: ClassVar[str | None] = "a t + b, --critic-temperature"  # it anneals the token temperature itself
    critic: str | None = field(default=None, metadata=option("critic", "Token-Critic folder (default: MODEL/critic)"))
    noise: float = field(default=1.0, metadata=option("critic_noise", "selection noise K, K u t added to the scores (default 1)"))
    temperature: tuple[float, float] = field(default=(0.0, 1.0), metadata=option("critic_temperature", "token temperature a t + b (default 0 1)", type=float, nargs=2, metavar=("A", "B")))

    def __post_init__(self) -> None:
        finite("critic selection noise", self.noise, 0.0)
        if len(tuple(self.temperature)) != 2:
            raise MaskgenError(f"critic temperature is (a, b) of a t + b, got {self.temperature}")
        for v in self.temperature:
            finite("critic temperature", v)
        self.temperature = tuple(float(v) for v in self.temperature)

    def brief(self) -> str:
        return f"K {self.noise:g}"

    def build(self, source):
        return CriticFill(source.critic(self.critic), self.noise, self.temperature)


class CriticFill(FillRule):
    name = "critic"
    discrete_only = True

    def __init__(self, critic: nn.Module, noise: float, temperature: tuple[float, float]):
        self.critic = critic
        self.noise = noise
        self.temperature_ab = tuple(temperature)

    def scores(self, x: Tensor, labels: Tensor, t: float, generator: Noise) -> Tensor:
        """P(real) per token from the critic, plus selection noise K u t, u ~ U[-0.5, 0.5]."""
        scores = torch.sigmoid(self.critic(x, labels).float())
        if self.noise > 0:
            scores = scores + self.noise * t * (uniform(tuple(x.shape), generator, x.device) - 0.5)
        return scores

    def remask(self, model, x: Tensor, labels: Tensor, t: float, gamma: float, generator: Noise, region: Tensor | None = None) -> Tensor:
        """Mask the ceil(M gamma) tokens the critic finds least real (plus selection noise),
        among the M positions of ``region`` [B, N] (all N when None): tokens the user gave
        (inpainting, a given modality) are never re-masked."""
        if gamma <= 0:
            return x
        scores = self.scores(x, labels, t, generator)
        if region is None:
            region = torch.ones_like(scores, dtype=torch.bool)
        count = torch.clamp(torch.ceil(region.sum(1).to(torch.float64) * gamma - 1e-9).long(), min=1)
        ranks = scores.masked_fill(~region, float("inf")).argsort(dim=1).argsort(dim=1)
        return model.remask(x, region & (ranks < count[:, None]))

    def temperature(self, step: Step) -> float:
        a, b = self.temperature_ab
        return a * step.t + b

    def __call__(self, model, p, step, generator):
        x = model.place(p.x, p.masked, p.candidates)
        if step.last:
            return x
        return self.remask(model, x, p.labels, step.t, step.gamma_s, generator, p.region)

    def rows_used(self, step: Step, batch: int) -> int:
        return 0 if step.last or step.gamma_s <= 0 else batch

    def start_from(self, model, tokens, labels, step, generator):
        return self.remask(model, tokens, labels, step.t, step.gamma_t, generator)

    def settings(self) -> dict:
        return {"fill": self.name, "critic_noise": self.noise, "critic_temperature": list(self.temperature_ab), "critic_sha256": getattr(self.critic, "sha256", None)}
