"""What ``maskgen tune`` tries (``maskgen.tuning`` runs it): the search space of sampler specs
on one model, random proposals and local perturbations in it, the papers' own samplers as
fixed candidates, and each spec's NFE measured by sampling.

The space is the registry's (``maskgen.sampling.registry``): every fill rule and guidance whose
spec declares a ``search`` (the range of each field it tunes), in ``search_rank`` order, that
builds on the model. Today: MaskGIT's confidence rule (Chang et al. 2022), the Halton order
(Besnier et al. 2025), eMIGM's ancestral rule (You et al. 2025, Eq. 6), Discrete Interpolants'
Euler step (Hu & Ommer 2025, Alg. 1), Token-Critic (Lezama et al. 2022, Alg. 2) and a Di[M]O
one-step student (Zhu et al. 2025: NFE 1, or 1 + teacher refinement steps) where the model has
one; guidance: none, classifier-free guidance with eMIGM's interval, self-guidance (Hur et al.
2024, Eq. 6) or both. The token draw (temperature, argmax last) and the schedule are searched
here for every rule.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..errors import MaskgenError
from ..sampling.draw import ImageNoise, TokenDraw
from ..sampling.registry import FILLS, GUIDANCES, clip
from ..sampling.spec import SamplerSpec, preset_names

SCHEDULES = ("cosine", "arccos", "linear", "root", "exp")


def fill_choices() -> tuple[str, ...]:
    """The fill rules tune searches: those whose spec declares a ``search``, in ``search_rank`` order."""
    return tuple(cls.kind for cls in FILLS.by("search_rank") if cls.search is not None)


def guidance_choices() -> tuple[str, ...]:
    """"none", each searched guidance alone, then all of them together ("cfg+self")."""
    tuned = [cls.kind for cls in GUIDANCES.by("search_rank") if cls.search is not None]
    return ("none", *tuned, *(["+".join(tuned)] if len(tuned) > 1 else []))


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


def max_step_passes() -> int:
    """The dearest step a candidate takes: the generator's strong row, one weak row per guidance
    of the richest choice (cfg+self), and the Token-Critic's pass of the critic rule. With at most
    one step per token (``NFEMeter.fit``), N * this is more than any candidate can spend."""
    return 1 + max((len(c.split("+")) for c in guidance_choices() if c != "none"), default=0) + 1


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

        fills = [k for k in fill_choices() if builds(SamplerSpec(steps=1, fill=FILLS[k]()))]
        if not fills:
            raise MaskgenError("no fill rule builds on this model")
        # probed with a rule that builds: the default (confidence) does not on continuous tokens
        fill = FILLS[fills[0]]()
        tuned = {kind: builds(SamplerSpec(steps=1, fill=fill, guidance=[GUIDANCES[kind](scale=1.0)])) for kind in guidance_choices()[1:] if "+" not in kind}
        guidances = [c for c in guidance_choices() if all(c == "none" or tuned[k] for k in c.split("+"))]
        return cls(fills, guidances, model.continuous)

    def propose(self, rng: random.Random) -> SamplerSpec:
        """One random spec (steps left at 1; ``NFEMeter.fit`` sets them for a budget)."""
        rule = FILLS[rng.choice(self.fills)]
        fill = rule(**{name: r.draw(rng) for name, r in rule.search.items()})
        draw = TokenDraw()
        if not self.continuous and not rule.owns_temperature:  # a rule that anneals its own token temperature keeps the draw's at 1
            draw = TokenDraw(temperature=round(rng.uniform(0.6, 1.3), 3), argmax_last=rng.random() < 0.5)
        chosen = rng.choice(self.guidances).split("+")
        guidance = [g(**{name: r.draw(rng) for name, r in g.search.items()}) for g in GUIDANCES.by("search_rank") if g.kind in chosen]
        return SamplerSpec(steps=1, schedule=rng.choice(SCHEDULES), fill=fill, draw=draw, guidance=guidance)

    def perturb(self, spec: SamplerSpec, rng: random.Random) -> SamplerSpec:
        """A neighbour of ``spec`` (steps left at 1): the fill rule and the kinds of guidance
        stay, every number moves by a small step within its search range, and the schedule,
        argmax-last and a CFG interval's presence each flip now and then (refinement)."""
        f = spec.fill
        ranges = FILLS[f.kind].search or {}
        if ranges:
            f = replace(f, **{name: r.perturb(getattr(f, name), rng) for name, r in ranges.items()})
        draw = spec.draw
        if not self.continuous and not f.owns_temperature:
            flip = rng.random() < 0.15
            draw = TokenDraw(temperature=clip(draw.temperature + rng.gauss(0.0, 0.05), 0.6, 1.3), argmax_last=draw.argmax_last != flip)
        guidance = []
        for g in spec.guidance:
            ranges = GUIDANCES[g.kind].search or {}
            guidance.append(replace(g, **{name: r.perturb(getattr(g, name), rng) for name, r in ranges.items()}) if ranges else g)
        schedule = spec.schedule if rng.random() > 0.2 or spec.schedule not in SCHEDULES else rng.choice(SCHEDULES)
        return spec.replace(steps=1, schedule=schedule, fill=f, draw=draw, guidance=guidance)


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
