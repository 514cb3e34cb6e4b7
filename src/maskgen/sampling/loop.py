"""The one sampling loop: start all-masked at t=1, move to t=0 over T steps.

At step i the loop goes from t = (T - i) / T to s = (T - i - 1) / T (exact fractions, so
an interval edge such as 0.3 at T = 10 is hit exactly; a fill rule may lay its own grid,
as Discrete Interpolants' released loop does, ``FillRule.step``). It runs the model once on a batch
holding the strong input and the weak input of every active batched guidance (CFG), then
whatever the dependent guidances compute from that pass (blur, SAG, self-guidance); the
model combines the branches and draws a candidate per position; the fill rule decides which
positions hold a token after the step (a rule may make a step's prediction itself: Di[M]O's
one-step student stands in for the first pass, ``fills/one_step.py``). The model is anything that keeps the contract in
``denoiser.py``; every method of the papers is a piece plugged in here, never a new loop
(following the official MaskGIT decoder, whose sampler takes a ``tokens_to_logits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from ..progress import progress as progress_bar

from ..errors import MaskgenError
from ..schedules import Schedule, get_schedule
from .denoiser import Denoiser, DiscreteDenoiser
from .draw import ImageNoise, Noise, TokenDraw
from .fill import FillRule, Proposal, Step
from .guidance import Guidance
from .registry import DENOISERS


@dataclass
class SampleResult:
    tokens: Tensor  # [B, N] code ids, or [B, N, d] latents of a continuous-token generator
    labels: Tensor  # [B]
    nfe: float  # network forward passes per image, all networks
    settings: dict = field(default_factory=dict)  # includes nfe_generator and nfe_critic (and nfe_head: continuous)
    masked_per_step: list[list[int]] = field(default_factory=list)  # masked count per image after each step


def as_denoiser(model) -> Denoiser:
    """``model`` as the loop sees it: a bare network gets the denoiser registered for its kind
    (``registry.DENOISERS``; a discrete one for a network of no registered kind), a denoiser stays."""
    if not isinstance(model, torch.nn.Module):
        return model
    return DENOISERS.get(getattr(model, "checkpoint_kind", None), DiscreteDenoiser)(model)


class Sampler:
    """Sampler = denoiser + schedule + fill rule + token draw + guidances + number of steps.

    Build one from a ``SamplerSpec`` (``spec.build(model)``); ``spec`` is kept so a result
    records the spec that replays it.
    """

    def __init__(
        self,
        model: Denoiser,
        fill: FillRule,
        draw: TokenDraw | None = None,  # or HeadSampling, for a continuous-token generator
        steps: int = 8,
        schedule: str | Schedule = "cosine",
        guidance: Sequence[Guidance] = (),
        spec: Any = None,  # the SamplerSpec that built it (spec.build): its to_dict is what a result records
    ):
        if steps < 1:
            raise MaskgenError(f"steps must be >= 1, got {steps}")
        self.model = as_denoiser(model)
        self.fill = fill
        self.draw = draw or TokenDraw()
        self.steps = steps
        self.schedule = get_schedule(schedule)
        self.guidance = list(guidance)
        self.spec = spec
        for g in self.guidance:
            g.check(self.model)
        fill.check(self.model)
        self.model.check_draw(self.draw)

    def settings(self) -> dict:
        if self.spec is not None:
            return {"sampler": self.spec.to_dict()}
        return {"steps": self.steps, "schedule": self.schedule.name, **self.fill.settings(), "guidance": [g.settings() for g in self.guidance]}

    @property
    def passes(self) -> int:
        """Network steps one call runs (what a progress bar counts): the fill rule's passes of ``steps``."""
        return self.fill.passes(self.steps)

    def check_labels(self, labels: Tensor) -> None:
        c = self.model.num_classes
        bad = labels[(labels < 0) | (labels > c)]
        if len(bad):
            raise MaskgenError(f"class id {int(bad[0])} out of range: the model has classes 0..{c - 1} ({c} = unconditional)")

    def predict(self, x: Tensor, labels: Tensor, step: Step) -> tuple[Tensor, list[Tensor], list[float], int]:
        """(strong prediction, weak predictions, their scales, network rows run) at ``step``."""
        active = [(g, s) for g in self.guidance if (s := g.scale.at(step)) != 0.0]
        batched = [g for g, _ in active if g.batched]
        xs, ls = [x], [labels]
        for g in batched:
            wx, wl = g.weak_inputs(x, labels)
            xs.append(wx)
            ls.append(wl)
        inputs, conds = torch.cat(xs), torch.cat(ls)
        b = len(x)
        gamma = torch.full((len(inputs),), step.gamma_t, dtype=torch.float64, device=x.device)
        needs = frozenset().union(*(g.needs for g, _ in active))
        out = self.model.forward(inputs, conds, gamma, needs)
        rows = len(inputs)
        preds = self.model.split(out, len(xs), guided=bool(active))
        weak = dict(zip(batched, preds[1:]))
        strong = out.rows(b) if len(xs) > 1 else out
        for g, _ in active:
            if not g.batched:
                w, used = g.weak_logits(self.model, x, labels, gamma[:b], strong)
                weak[g] = w.float()  # logits: the combination is normalised by the draw (denoiser.split)
                rows += used
        return preds[0], [weak[g] for g, _ in active], [s for _, s in active], rows

    def step(self, i: int) -> Step:
        return self.fill.step(i, self.steps, self.schedule, self.model.num_tokens)

    @torch.no_grad()
    def __call__(
        self,
        labels: Tensor,
        generator: Noise,
        progress: "bool | object" = False,
        init: Tensor | None = None,
        given: Tensor | None = None,
        on_step: Callable[[int, Tensor], None] | None = None,
    ) -> SampleResult:
        """Sample from a blank canvas; or refine finished tokens ``init`` [B, N] (the fill rule
        re-masks them first: Token-Critic Sec. 4.3 with the critic rule); or complete ``given``,
        a state whose masked positions are sampled while every other position stays as given
        (inpainting, outpainting, a given modality; the schedule's counts then run over the
        masked region, as in official MaskGIT's inpainting). ``generator`` is one
        ``torch.Generator`` for the batch, or an ``ImageNoise`` with one stream per image (what
        ``MaskGen.generate`` passes, so an image does not depend on the batch it is in).
        ``on_step(i, x)`` sees the state after each step (the app's live view). ``progress``:
        True shows this call's steps; a bar (``maskgen.progress.progress``) is advanced by one per
        step, so a caller sampling in chunks shows one bar over all of them."""
        model = self.model
        device = model.device
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.check_labels(labels)
        b = len(labels)
        if isinstance(generator, ImageNoise) and len(generator) != b:
            raise MaskgenError(f"{len(generator)} noise streams for {b} images: give one per image")
        if init is not None and given is not None:
            raise MaskgenError("give tokens to refine (init) or a partial state to complete (given), not both")
        rows, fill_rows, own_rows, history = 0, 0, 0, []
        model.reset_counts(b)
        region = None
        if init is not None:
            init = self._batch_state(init, b, "tokens to refine")
            x = self.fill.start_from(model, init, labels, self.step(0), generator)
            fill_rows += b
        elif given is not None:
            x = self._batch_state(given, b, "a partial state to complete")
            region = model.masked(x)
        else:
            x = model.blank(b, device)
        run: dict = {}
        shared = progress if hasattr(progress, "update") else None
        for i in progress_bar(range(self.passes), desc="sample", unit="step", disable=shared is not None or not progress, leave=False):
            step = self.step(i)
            masked = model.masked(x)
            if not masked.any():
                history.append([0] * b)
                if shared is not None:
                    shared.update(1)
                continue
            own = self.fill.predict(model, x, labels, step, generator)
            if own is None:
                strong, weaks, scales, used = self.predict(x, labels, step)
                rows += used
            else:  # the rule's own network (a one-step student) predicts this step, unguided
                (strong, used), weaks, scales = own, [], []
                own_rows += used
            draw = self.draw.at(step)
            candidates, confidence = model.draw(strong, weaks, scales, draw, generator, self.fill.draws_last(step), self.fill.temperature(step))
            best = getattr(model, "most_likely", None) if getattr(draw, "argmax_last", False) else None
            mode = (lambda: best(strong, weaks, scales, draw)) if best is not None else None
            x = self.fill(model, Proposal(x, masked, candidates, confidence, labels, region, mode, run), step, generator)
            fill_rows += self.fill.rows_used(step, b)
            history.append(model.masked(x).sum(1).tolist())
            if on_step is not None:
                on_step(i, x)
            if shared is not None:
                shared.update(1)
        nfe = {"nfe": (rows + fill_rows + own_rows) / b, "nfe_generator": rows / b, "nfe_critic": fill_rows / b, **model.counts()}
        if own_rows:
            nfe["nfe_student"] = own_rows / b
        return SampleResult(x, labels, nfe["nfe"], {**self.settings(), **nfe}, history)

    def _batch_state(self, x: Tensor, batch: int, what: str) -> Tensor:
        x = x.to(self.model.device)
        if x.shape[0] != batch:
            raise MaskgenError(f"{what} must be one grid per label ({batch}), got {x.shape[0]}")
        self.model.check_state(x)
        return x
