"""Fill rules: which masked positions receive their drawn candidate at a step t -> s.

Every rule sees a ``Proposal`` (the state, which positions are masked, a drawn candidate
and its confidence at every position) and the step, and returns the state after the step
through the model's ``place`` / ``remask`` (``denoiser.py``), so a rule works on any model
that keeps the loop's contract. At the last step (s = 0) every rule fills every position
that is still masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..schedules import Schedule
from .counts import masked_after
from .draw import Noise, gumbel, uniform


@dataclass
class Proposal:
    """What a fill rule decides on at one step."""

    x: Tensor  # the state before the step
    masked: Tensor  # [B, N] bool
    candidates: Tensor  # a drawn candidate per position
    confidence: Tensor  # [B, N] its log-probability under the draw distribution
    labels: Tensor  # [B]
    region: Tensor | None = None  # [B, N] bool: the positions sampling may change (None: all)
    most_likely: Callable[[], Tensor] | None = None  # the draw's mode per position, if it argmaxes the last step
    run: dict = field(default_factory=dict)  # what a rule draws once per run (Halton's roll), kept across steps

    @property
    def region_size(self) -> Tensor:
        """[B] positions to fill over the whole run: N from a blank canvas, the masked region
        when inpainting or given a modality (official MaskGIT: ``unknown_number_in_the_beginning``)."""
        if self.region is None:
            return torch.full((len(self.masked),), self.masked.shape[1], device=self.masked.device)
        return self.region.sum(1)


@dataclass
class Step:
    """Step ``index`` of ``total``, from time ``t`` to ``s`` (t=1 all masked, s=0 clean)."""

    index: int
    total: int
    t: float
    s: float
    schedule: Schedule
    size: int | None = None  # N, the positions of a blank canvas (what MAR's CFG ramp divides by)

    @property
    def last(self) -> bool:
        return self.index == self.total - 1

    @property
    def progress(self) -> float:
        """(index + 1) / total: MaskGIT's ``ratio``."""
        return (self.index + 1) / self.total

    @property
    def gamma_t(self) -> float:
        return float(self.schedule.gamma(self.t))

    @property
    def gamma_s(self) -> float:
        return float(self.schedule.gamma(self.s))


class FillRule:
    """Tokens after a step. A rule that runs a network of its own (the Token-Critic) says
    how many rows it ran in ``rows_used``, and may start from finished tokens (``start_from``)
    or predict a step itself instead of the generator (``predict``)."""

    name = "fill"
    discrete_only = False

    def __call__(self, model, p: Proposal, step: Step, generator: Noise) -> Tensor:
        raise NotImplementedError

    def passes(self, steps: int) -> int:
        """Network passes the rule takes for ``steps`` steps (T; Discrete Interpolants'
        official loop: T - 1)."""
        return steps

    def step(self, index: int, steps: int, schedule: Schedule, size: int | None = None) -> Step:
        """Pass ``index`` goes from t = (T - i)/T to s = (T - i - 1)/T (exact fractions, so an
        interval edge such as 0.3 at T = 10 is hit exactly)."""
        t, s = Fraction(steps - index, steps), Fraction(steps - index - 1, steps)
        return Step(index, self.passes(steps), float(t), float(s), schedule, size)

    def draws_last(self, step: Step) -> bool:
        """Whether the token draw treats ``step`` as the last (``argmax_last``)."""
        return step.last

    def temperature(self, step: Step) -> float | None:
        """A token temperature this rule imposes at ``step`` (None: the draw's own)."""
        return None

    def rows_used(self, step: Step, batch: int) -> int:
        return 0

    def predict(self, model, x: Tensor, labels: Tensor, step: Step, generator: Noise) -> tuple[Tensor, int] | None:
        """Logits [B, N, K] the rule makes itself at ``step`` in place of the generator's pass
        (a one-step student: ``sampling/one_step.py``), and the network rows that took; None:
        the generator (and its guidances) predict, as at every step of every other rule."""
        return None

    def check(self, model) -> None:
        if self.discrete_only and model.continuous:
            raise MaskgenError(f"the {self.name} fill rule needs a discrete-token generator, not {type(model).__name__}")

    def start_from(self, model, tokens: Tensor, labels: Tensor, step: Step, generator: Noise) -> Tensor:
        raise MaskgenError(f"the {self.name} fill rule cannot refine finished tokens; use the critic rule")

    def settings(self) -> dict:
        return {"fill": self.name}


GUMBEL_ANNEALING = ("linear", "linear-inclusive", "compound", "warmup", "random", "random-order", "none")


def reveal_highest(model, p: Proposal, step: Step, priority: Tensor, counts: str = "maskgit") -> Tensor:
    """Reveal the masked positions of highest ``priority`` [B, N] so that as many stay masked
    as the ``counts`` rule says (``counts.py``; official MaskGIT's by default: floor(M gamma(s)),
    at most one fewer than now and at least one; M is the region to fill, N from a blank canvas)."""
    masked = p.masked
    target = masked_after(counts, step, p.region_size, masked.sum(1))
    ranks = priority.masked_fill(~masked, float("inf")).argsort(dim=1).argsort(dim=1)
    return model.place(p.x, masked & ~(ranks < target[:, None]), p.candidates)


class ConfidenceFill(FillRule):
    """MaskGIT: keep the most confident draws so the masked count follows gamma(s).

    Confidence is the log-probability of the drawn token plus Gumbel noise scaled by
    ``choice_temperature * a(step)`` (the official MaskGIT decoder). Annealing ``a``:
    ``linear`` 1 - (i+1)/T, afresh each step (official MaskGIT, the default);
    ``linear-inclusive`` 1 - i/(T-1), which reaches 0 at the last step (the valeoai v1
    reproduction of MaskGIT);
    ``compound`` prod_{j<=i} (1 - (j+1)/T), the cumulative decay in 000's code (its tuned
    temperatures assume it); ``warmup`` the linear rule ramped up over the first quarter
    of the steps; ``random`` ignores confidence and reveals a uniformly random subset;
    ``random-order`` likewise, in one random order per image drawn at the first step (MAR,
    Li et al. 2024: the same distribution as ``random``, MAR's draws);
    ``none`` uses the confidence alone. Decoded positions are never re-masked.

    As in the official MaskGIT decoder, at least one token stays masked until the last step
    (and at least one is revealed per step), so the rule runs all T steps even when T > N
    or floor(N gamma(s)) = 0, and its NFE is T.
    """

    name = "confidence"

    def __init__(self, choice_temperature: float, annealing: str, counts: str = "maskgit"):
        if annealing not in GUMBEL_ANNEALING:
            raise MaskgenError(f"unknown Gumbel annealing {annealing!r}; choose from {', '.join(GUMBEL_ANNEALING)}")
        if choice_temperature < 0:
            raise MaskgenError(f"choice temperature must be >= 0, got {choice_temperature}")
        self.choice_temperature = choice_temperature
        self.annealing = annealing
        self.counts = counts

    @property
    def discrete_only(self) -> bool:
        # "random" never reads the confidence: with the cosine schedule it is MAR's
        # random-order rule, so it also runs a continuous-token generator (which has none)
        return self.annealing not in ("random", "random-order")

    def check(self, model) -> None:
        if self.discrete_only and model.continuous:
            raise MaskgenError(
                "the confidence fill rule ranks token log-probabilities, which a continuous-token generator does not give; "
                "use --sampler ancestral (eMIGM) or --annealing random (MAR's random order)"
            )

    def noise_scale(self, step: Step) -> float:
        a = 1.0 - step.progress
        if self.annealing == "linear-inclusive":
            a = 1.0 - step.index / (step.total - 1) if step.total > 1 else 1.0
        elif self.annealing == "compound":
            a = math.prod(1.0 - (j + 1) / step.total for j in range(step.index + 1))
        elif self.annealing == "warmup":
            a *= min(1.0, (step.index + 1) / max(1, math.ceil(step.total / 4)))
        elif self.annealing == "none":
            a = 0.0
        return self.choice_temperature * a

    def __call__(self, model, p, step, generator):
        shape, device = tuple(p.masked.shape), p.masked.device
        if self.annealing == "random-order" and "order" not in p.run:
            p.run["order"] = uniform(shape, generator, device)  # MAR: later in the order, revealed first
        if step.last:
            return model.place(p.x, p.masked, p.candidates)
        if self.annealing == "random":
            confidence = uniform(shape, generator, device)
        elif self.annealing == "random-order":
            confidence = p.run["order"]
        else:
            confidence = p.confidence
            scale = self.noise_scale(step)
            if scale > 0:
                confidence = confidence + scale * gumbel(shape, generator, device)
        return reveal_highest(model, p, step, confidence, self.counts)

    def settings(self):
        return {"fill": self.name, "choice_temperature": self.choice_temperature, "annealing": self.annealing, "counts": self.counts}


TIME_GRIDS = ("exact", "linspace")
LINSPACE_END = 1e-5  # eMIGM's sample_tokens: torch.linspace(1.0, eps, T + 1), eps = 1e-5


class AncestralFill(FillRule):
    """MDM ancestral step (002 Eq. 6): each masked token is revealed independently with
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


FLOW_LOOPS = ("paper", "code")


class FlowEulerFill(FillRule):
    """Euler step of the discrete flow (Discrete Interpolants, Hu & Ommer 2025, Alg. 1).

    With u_t = kappa'/(1 - kappa) (p_theta - delta_{x_t}) and step h, a masked position
    leaves the mask with probability h kappa'/(1 - kappa), which in gamma's time is
    min(1, (t - s) gamma'(t) / gamma(t)), and takes a token from p_theta (both Alg. 1 as
    printed, whose kappa/(1 - kappa) is a misprint, and its authors' code use kappa').

    ``loop``: ``paper`` runs T passes from t = 1 and fills every position still masked at the
    last one (argmax if the draw says so). ``code`` is the authors' released loop: it starts
    at kappa-time 1e-4 and runs while t <= 1 - h, so T - 1 passes at gamma-times
    1 - 1e-4 - i/T; after the last pass's Euler draw, the positions still masked take the
    argmax of that pass's distribution (their ``max_last``, no extra pass) when the draw's
    ``argmax_last`` is set, else the token that pass drew (their code would leave them masked).
    """

    name = "flow"
    T_MIN = 1e-4  # the authors' code's first kappa-time

    def __init__(self, loop: str = "paper"):
        if loop not in FLOW_LOOPS:
            raise MaskgenError(f"unknown flow loop {loop!r}; choose from {', '.join(FLOW_LOOPS)}")
        self.loop = loop
        self.discrete_only = loop == "code"  # the argmax of what remains needs token logits

    def passes(self, steps: int) -> int:
        if self.loop == "code":
            if steps < 2:
                raise MaskgenError("the flow rule's code loop runs T - 1 passes; give at least 2 steps")
            return steps - 1
        return steps

    def step(self, index, steps, schedule, size=None):
        if self.loop == "paper":
            return super().step(index, steps, schedule, size)
        t = 1.0 - self.T_MIN - index / steps
        return Step(index, steps - 1, t, t - 1.0 / steps, schedule, size)

    def draws_last(self, step: Step) -> bool:
        return step.last and self.loop == "paper"

    def __call__(self, model, p, step, generator):
        if step.last and self.loop == "paper":
            return model.place(p.x, p.masked, p.candidates)
        rate = float(step.schedule.derivative(step.t) / max(step.gamma_t, 1e-12))
        prob = min(1.0, (step.t - step.s) * rate)
        reveal = p.masked & (uniform(tuple(p.masked.shape), generator, p.masked.device) < prob)
        x = model.place(p.x, reveal, p.candidates)
        if step.last:  # the code loop's end: what is still masked takes the argmax, or the drawn token
            rest = p.masked & ~reveal
            x = model.place(x, rest, p.most_likely() if p.most_likely is not None else p.candidates)
        return x

    def settings(self):
        return {"fill": self.name, "loop": self.loop}


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
