"""The one sampling loop: start all-masked at t=1, move to t=0 over T steps.

At each step t_i = 1 - i/T -> s_i = 1 - (i+1)/T the loop runs the network once on a batch
holding the strong input and the weak input of every active batched guidance (CFG), then
whatever the dependent guidances compute from that pass (blur, SAG, self-guidance),
combines their log-probabilities (``guidance.combine``) and hands them to the fill rule,
which draws tokens (``TokenDraw``) and decides which positions hold a token after the step. Following the
official MaskGIT decoder, every variant is a piece plugged in here, never a new loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import MaskgenError
from ..models.transformer import ForwardPass
from ..schedules import Schedule, get_schedule
from .draw import TokenDraw
from .fill import FillRule, Step
from .guidance import Guidance, combine


@dataclass
class SampleResult:
    tokens: Tensor  # [B, N] code ids
    labels: Tensor  # [B]
    nfe: float  # network forward passes per image, all networks
    settings: dict = field(default_factory=dict)  # includes nfe_generator and nfe_critic
    masked_per_step: list[list[int]] = field(default_factory=list)  # masked count per image after each step


class Sampler:
    """Sampler = network + schedule + fill rule + token draw + guidances + number of steps."""

    def __init__(
        self,
        model: nn.Module,
        fill: FillRule,
        draw: TokenDraw | None = None,
        steps: int = 8,
        schedule: str | Schedule = "cosine",
        guidance: Sequence[Guidance] = (),
    ):
        if steps < 1:
            raise MaskgenError(f"steps must be >= 1, got {steps}")
        self.model = model
        self.fill = fill
        self.draw = draw or TokenDraw()
        self.steps = steps
        self.schedule = get_schedule(schedule)
        self.guidance = list(guidance)
        self.config = model.config

    def settings(self) -> dict:
        return {
            "steps": self.steps,
            "schedule": self.schedule.name,
            **self.fill.settings(),
            "draw": {k: getattr(self.draw, k) for k in ("temperature", "top_k", "top_p", "argmax_last")},
            "guidance": [g.settings() for g in self.guidance],
        }

    def check_labels(self, labels: Tensor) -> None:
        c = self.config.num_classes
        bad = labels[(labels < 0) | (labels > c)]
        if len(bad):
            raise MaskgenError(f"class id {int(bad[0])} out of range: the model has classes 0..{c - 1} ({c} = unconditional)")

    def log_probs(self, x: Tensor, labels: Tensor, step: Step) -> tuple[Tensor, int]:
        """Guided log-probabilities [B, N, K] (up to a per-position constant) and the network rows it cost."""
        active = [(g, s) for g in self.guidance if (s := g.scale.at(step)) != 0.0]
        batched = [g for g, _ in active if g.batched]
        xs, ls = [x], [labels]
        for g in batched:
            wx, wl = g.weak_inputs(x, labels)
            xs.append(wx)
            ls.append(wl)
        inputs, conds = torch.cat(xs), torch.cat(ls)
        b = len(x)
        t = torch.full((len(inputs),), step.t, device=x.device) if self.config.timestep_input else None
        needs = set().union(*(g.needs for g, _ in active))
        if needs:
            first = self.model.run(inputs, conds, t, hidden="hidden" in needs, saliency="saliency" in needs)
        else:
            first = ForwardPass(self.model(inputs, conds, t))
        rows = len(inputs)
        logits = first.logits.float()
        if not active:
            # The token draw normalises anyway; logits are log-probabilities up to a constant.
            return logits, rows
        logp = logits.log_softmax(-1).chunk(len(xs))
        weak = dict(zip(batched, logp[1:]))
        strong = first.rows(b)
        for g, _ in active:
            if not g.batched:
                w, used = g.weak_logits(self.model, x, labels, None if t is None else t[:b], strong)
                weak[g] = w.float().log_softmax(-1)
                rows += used
        return combine(logp[0], [weak[g] for g, _ in active], [s for _, s in active]), rows

    def step(self, i: int) -> Step:
        return Step(i, self.steps, 1.0 - i / self.steps, 1.0 - (i + 1) / self.steps, self.schedule)

    @torch.no_grad()
    def __call__(self, labels: Tensor, generator: torch.Generator, progress: bool = False, init: Tensor | None = None) -> SampleResult:
        """Sample from a blank canvas, or refine finished tokens ``init`` [B, N] (the fill rule
        re-masks them first: 004 Sec. 4.3 with the critic rule)."""
        device = next(self.model.parameters()).device
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.check_labels(labels)
        b, n, mask_id = len(labels), self.config.num_tokens, self.config.mask_id
        rows, fill_rows, history = 0, 0, []
        if init is None:
            x = torch.full((b, n), mask_id, dtype=torch.long, device=device)
        else:
            if tuple(init.shape) != (b, n):
                raise MaskgenError(f"tokens to refine must be [{b}, {n}], got {list(init.shape)}")
            x = self.fill.start_from(init.to(device), labels, self.step(0), mask_id, generator)
            fill_rows += b
        for i in tqdm(range(self.steps), desc="sample", disable=not progress, leave=False):
            step = self.step(i)
            if not (x == mask_id).any():
                history.append([0] * b)
                continue
            logp, used = self.log_probs(x, labels, step)
            rows += used
            x = self.fill(x, logp, step, self.draw, mask_id, generator, labels)
            fill_rows += self.fill.rows_used(step, b)
            history.append((x == mask_id).sum(1).tolist())
        nfe = {"nfe": (rows + fill_rows) / b, "nfe_generator": rows / b, "nfe_critic": fill_rows / b}
        return SampleResult(x, labels, nfe["nfe"], {**self.settings(), **nfe}, history)
