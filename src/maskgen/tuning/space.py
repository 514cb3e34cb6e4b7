"""What ``maskgen tune`` tries (``maskgen.tuning`` runs it): the search space of sampler specs
on one model, random proposals and local perturbations in it, the papers' own samplers as
fixed candidates, and each spec's NFE measured by sampling.

Fill rules: MaskGIT's confidence (Chang et al. 2022), eMIGM's ancestral rule (You et al. 2025
Eq. 6), the Halton order (Besnier et al. 2025), Discrete Interpolants' Euler step with argmax
last (Hu & Ommer 2025 Alg. 1), Token-Critic (Lezama et al. 2022 Alg. 2) and a Di[M]O one-step
student (Zhu et al. 2025: NFE 1, or 1 + teacher refinement steps) where the model has one; guidance: none,
classifier-free guidance with eMIGM's interval, self-guidance (Hur et al. 2024 Eq. 6) or both.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..errors import MaskgenError
from ..sampling.draw import ImageNoise, TokenDraw
from ..sampling.spec import AncestralSpec, CFGSpec, ConfidenceSpec, CriticSpec, FlowSpec, HaltonSpec, OneStepSpec, SamplerSpec, SelfSpec, preset_names

GUIDANCE_CHOICES = ("none", "cfg", "self", "cfg+self")
SCHEDULES = ("cosine", "arccos", "linear", "root", "exp")
FILL_CHOICES = ("confidence", "halton", "ancestral", "flow", "critic", "one-step")
# The papers' own samplers (flat ``maskgen sample`` options, steps fitted per budget) join the
# search as fixed candidates, so the winner is never a random draw that a paper's default beats
# on the search's samples: MaskGIT (Chang et al. 2022), eMIGM's ancestral rule with its exp
# schedule and CFG interval (You et al. 2025, Sec. 5.3), Discrete Interpolants' flow with argmax
# last (Hu & Ommer 2025), the Halton order (Besnier et al. 2025), self-guidance at temperature
# 25 (Hur et al. 2024), Token-Critic (Lezama et al. 2022) and Di[M]O's one-step student (Zhu et al.
# 2025; at NFE 1 alone, at NFE 2 with one teacher step). Those a model cannot build are left out.
PAPER_SAMPLERS: dict[str, dict[str, Any]] = {
    "maskgit": dict(fill="confidence", choice_temperature=4.5),
    "ancestral-exp": dict(fill="ancestral", schedule="exp"),
    "cfg-interval": dict(fill="ancestral", schedule="exp", cfg=2.0, cfg_interval=(0.1, 0.3)),
    "flow-argmax-last": dict(fill="flow", schedule="linear", argmax_last=True),
    "halton": dict(fill="halton"),
    "self-guidance": dict(fill="confidence", annealing="compound", choice_temperature=25.0, guidance="self", scale=1.0),
    "token-critic": dict(fill="critic"),
    "dimo": dict(fill="one-step"),
}
MAX_ATTEMPTS = 50  # proposals drawn before a budget is declared too small for every choice
# The dearest step a candidate takes: the generator's strong row, one weak row per guidance of
# the richest choice (cfg+self), and the Token-Critic's pass of the critic rule. With at most one
# step per token (NFEMeter.fit), N * MAX_STEP_PASSES is more than any candidate can spend.
MAX_STEP_PASSES = 1 + max(len(choice.split("+")) for choice in GUIDANCE_CHOICES if choice != "none") + 1


class NFEMeter:
    """The NFE per image of a spec on a model, measured by sampling one image (cached)."""

    def __init__(self, model) -> None:
        self.model = model
        self._cache: dict[str, float] = {}

    def __call__(self, spec: SamplerSpec) -> float:
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key not in self._cache:
            device = self.model.device
            labels = torch.zeros(1, dtype=torch.long, device=device)
            # the sampler alone: the NFE is the loop's count, the decoded image is not needed
            result = self.model.sampler(spec)(labels, ImageNoise(0, [0], device))
            self._cache[key] = float(result.nfe)
        return self._cache[key]

    def fit(self, spec: SamplerSpec, budget: int) -> SamplerSpec | None:
        """``spec`` with the most steps whose NFE is at most ``budget`` (None: not even one step fits).
        A step costs at least 1 (a pass fewer in all for DI's code loop), so the walk starts at
        ``budget`` + 1 steps and goes down one at a
        time: a guidance interval makes the cost uneven in the steps, and a jump could skip a fit."""
        # budget + 1: DI's code loop runs T - 1 passes; never more steps than the model has tokens
        # (what `maskgen sample` refuses, so every spec tune writes replays): a huge budget is N steps
        for steps in range(min(budget + 1, self.model.generator.config.num_tokens), 0, -1):
            try:
                candidate = spec.replace(steps=steps)
            except MaskgenError:
                return None  # fewer steps than the spec's pieces need (DI's code loop, v1's counts)
            if self(candidate) <= budget:
                return candidate
        return None


@dataclass
class SearchSpace:
    """What a proposal may choose on this model: fill rules and guidances it can build."""

    fills: list[str]
    guidances: list[str]
    continuous: bool

    @classmethod
    def for_model(cls, model) -> "SearchSpace":
        def builds(spec: SamplerSpec) -> bool:
            try:
                model.sampler(spec)
            except MaskgenError:
                return False
            return True

        fill_specs = {"confidence": ConfidenceSpec(), "halton": HaltonSpec(), "ancestral": AncestralSpec(), "flow": FlowSpec(), "critic": CriticSpec(), "one-step": OneStepSpec()}
        fills = [k for k in FILL_CHOICES if builds(SamplerSpec(steps=1, fill=fill_specs[k]))]
        if not fills:
            raise MaskgenError("no fill rule builds on this model")
        # probed with a rule that builds: the default (confidence) does not on continuous tokens
        fill = fill_specs[fills[0]]
        cfg = builds(SamplerSpec(steps=1, fill=fill, guidance=[CFGSpec(scale=1.0)]))
        sg = builds(SamplerSpec(steps=1, fill=fill, guidance=[SelfSpec(scale=1.0)]))
        guidances = [g for g, ok in (("none", True), ("cfg", cfg), ("self", sg), ("cfg+self", cfg and sg)) if ok]
        return cls(fills, guidances, model.continuous)

    def propose(self, rng: random.Random) -> SamplerSpec:
        """One random spec (steps left at 1; ``NFEMeter.fit`` sets them for a budget)."""
        rule = rng.choice(self.fills)
        if rule in ("confidence", "one-step"):  # the one-step rule's further steps are the confidence rule's
            kind = ConfidenceSpec if rule == "confidence" else OneStepSpec
            fill = kind(choice_temperature=round(math.exp(rng.uniform(0.0, math.log(50.0))), 3), annealing=rng.choice(("linear", "compound")))
        elif rule == "critic":
            fill = CriticSpec(noise=round(rng.uniform(0.25, 2.0), 3))
        else:
            fill = {"halton": HaltonSpec, "ancestral": AncestralSpec, "flow": FlowSpec}[rule]()
        draw = TokenDraw()
        if not self.continuous and rule != "critic":  # the critic rule anneals its own token temperature
            draw = TokenDraw(temperature=round(rng.uniform(0.6, 1.3), 3), argmax_last=rng.random() < 0.5)
        guidance = []
        choice = rng.choice(self.guidances)
        if "cfg" in choice:
            lo = round(rng.uniform(0.0, 0.4), 3)
            interval = None if rng.random() < 0.5 else (lo, round(rng.uniform(lo + 0.2, 1.0), 3))
            guidance.append(CFGSpec(scale=round(math.exp(rng.uniform(math.log(0.25), math.log(4.0))), 3), interval=interval))
        if "self" in choice:
            guidance.append(SelfSpec(scale=round(rng.uniform(0.25, 2.5), 3)))
        return SamplerSpec(steps=1, schedule=rng.choice(SCHEDULES), fill=fill, draw=draw, guidance=guidance)

    def perturb(self, spec: SamplerSpec, rng: random.Random) -> SamplerSpec:
        """A neighbour of ``spec`` (steps left at 1): the fill rule and the kinds of guidance
        stay, every number moves by a small step within its search range, and the schedule,
        argmax-last and a CFG interval's presence each flip now and then (refinement)."""
        f = spec.fill
        if f.kind in ("confidence", "one-step"):
            t = _clip(f.choice_temperature * math.exp(rng.gauss(0.0, 0.3)), 1.0, 50.0)
            annealing = f.annealing if rng.random() > 0.15 else ("linear" if f.annealing == "compound" else "compound")
            f = replace(f, choice_temperature=t, annealing=annealing)
        elif f.kind == "critic":
            f = replace(f, noise=_clip(f.noise + rng.gauss(0.0, 0.2), 0.25, 2.0))
        draw = spec.draw
        if not self.continuous and f.kind != "critic":
            flip = rng.random() < 0.15
            draw = TokenDraw(temperature=_clip(draw.temperature + rng.gauss(0.0, 0.05), 0.6, 1.3), argmax_last=draw.argmax_last != flip)
        guidance = []
        for g in spec.guidance:
            if g.kind == "cfg":
                interval = g.interval
                if rng.random() < 0.15:  # the interval on or off; switched on, eMIGM's own
                    interval = None if interval else PAPER_SAMPLERS["cfg-interval"]["cfg_interval"]
                elif interval:
                    lo = _clip(interval[0] + rng.gauss(0.0, 0.05), 0.0, 0.4)
                    interval = (lo, _clip(interval[1] + rng.gauss(0.0, 0.05), lo + 0.05, 1.0))
                guidance.append(replace(g, scale=_clip(g.scale * math.exp(rng.gauss(0.0, 0.2)), 0.25, 4.0), interval=interval))
            elif g.kind == "self":
                guidance.append(replace(g, scale=_clip(g.scale + rng.gauss(0.0, 0.2), 0.25, 2.5)))
            else:
                guidance.append(g)
        schedule = spec.schedule if rng.random() > 0.2 or spec.schedule not in SCHEDULES else rng.choice(SCHEDULES)
        return spec.replace(steps=1, schedule=schedule, fill=f, draw=draw, guidance=guidance)


def _clip(x: float, lo: float, hi: float) -> float:
    return round(min(max(x, lo), hi), 3)


@dataclass
class Trial:
    budget: int
    index: int | str  # a random proposal's number, or "paper:<name>"
    spec: SamplerSpec
    nfe: float


def paper_trials(model, meter: NFEMeter, budget: int) -> list[Trial]:
    """``PAPER_SAMPLERS`` and the authors' codebases' presets (docs/presets.md) that build on
    ``model``, each with the most steps ``budget`` pays for."""
    out = []
    candidates = [(f"paper:{name}", lambda o=options: SamplerSpec.from_options(**o, steps=1)) for name, options in PAPER_SAMPLERS.items()]
    candidates += [(f"preset:{name}", lambda n=name: SamplerSpec.preset(n)) for name in preset_names()]
    for key, make in candidates:
        try:
            fitted = meter.fit(make(), budget)
        except MaskgenError:
            continue  # this model lacks the piece (no critic, no self-guidance module, continuous tokens)
        if fitted is not None:
            out.append(Trial(budget, key, fitted, meter(fitted)))
    return out


def propose_trials(space: SearchSpace, meter: NFEMeter, budget: int, trials: int, seed: int) -> list[Trial]:
    """``trials`` proposals at ``budget``, each fitted to it; proposal i depends only on (seed, budget, i)."""
    out = []
    for i in range(trials):
        rng = random.Random(f"{seed}:{budget}:{i}")
        for _ in range(MAX_ATTEMPTS):
            fitted = meter.fit(space.propose(rng), budget)
            if fitted is not None:
                out.append(Trial(budget, i, fitted, meter(fitted)))
                break
        else:
            raise MaskgenError(f"NFE budget {budget} is below one step of every sampler tried")
    return out
