"""Token-Critic sampling (004 Algorithm 2) and refinement (004 Sec. 4.3) as a fill rule.

At a step t -> s the generator's (guided) prediction is drawn at every masked position,
with the token temperature annealed linearly, a * t + b (t = 1 at the first step). The
critic scores the whole grid, and the ``ceil(N gamma(s))`` lowest-scored positions are
masked for the next step, previously accepted tokens included, so a decision can be
revoked. Before ranking, selection noise K * u * t with u ~ U[-0.5, 0.5] per token is
added to the critic's probability that a token is real. The last step masks nothing.

Refinement starts from finished tokens: ``start_from`` masks the ``ceil(N gamma(1))``
lowest-scored ones, then the usual steps follow. With the schedule ``0.6 * cosine`` over
9 steps this is 004 Sec. 4.3: 60% re-sampled at the first step, then fewer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .draw import uniform
from .fill import FillRule, Step


class CriticFill(FillRule):
    name = "critic"

    def __init__(self, critic: nn.Module, noise: float = 1.0, temperature: tuple[float, float] = (0.0, 1.0)):
        self.critic = critic
        self.noise = noise
        self.temperature = tuple(temperature)

    def remask(self, x: Tensor, labels: Tensor, t: float, gamma: float, mask_id: int, generator: torch.Generator) -> Tensor:
        """Mask the ceil(N gamma) tokens the critic finds least real (plus selection noise)."""
        if gamma <= 0:
            return x
        count = max(1, math.ceil(x.shape[1] * gamma - 1e-9))
        scores = torch.sigmoid(self.critic(x, labels).float())
        if self.noise > 0:
            scores = scores + self.noise * t * (uniform(tuple(x.shape), generator, x.device) - 0.5)
        lowest = scores.argsort(dim=1).argsort(dim=1) < count
        return torch.where(lowest, torch.full_like(x, mask_id), x)

    def __call__(self, x, logp, step, draw, mask_id, generator, labels=None):
        a, b = self.temperature
        tau = a * step.t + b
        masked = x == mask_id
        candidates, _ = draw(logp / tau if tau != 1.0 else logp, generator, step.last)
        x = torch.where(masked, candidates, x)
        if step.last:
            return x
        return self.remask(x, labels, step.t, step.gamma_s, mask_id, generator)

    def rows_used(self, step: Step, batch: int) -> int:
        return 0 if step.last or step.gamma_s <= 0 else batch

    def start_from(self, tokens, labels, step, mask_id, generator):
        return self.remask(tokens, labels, step.t, step.gamma_t, mask_id, generator)

    def settings(self) -> dict:
        return {"fill": self.name, "critic_noise": self.noise, "critic_temperature": list(self.temperature), "critic_sha256": getattr(self.critic, "sha256", None)}
