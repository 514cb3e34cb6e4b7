"""The pieces a ``SamplerSpec`` is made of: a fill spec (``FILLS``) and guidance specs
(``GUIDANCES``), each a small dataclass registered by kind that builds its runtime object
(``fill.py``, ``guidance.py``) on a model. A new fill rule or guidance is one spec class here
and one runtime class there; ``spec.py`` composes them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..errors import MaskgenError
from .counts import COUNTS
from .guidance import (
    BlurGuidance,
    ClassifierFreeGuidance,
    Guidance,
    GuidanceScale,
    SelfAttentionGuidance,
    SelfGuidance,
)


class ComponentSource(Protocol):
    """What ``build`` needs besides the denoiser: networks trained on the generator."""

    def denoiser(self): ...
    def critic(self, folder: str | Path | None = None): ...
    def self_guidance_module(self, folder: str | Path | None = None): ...
    def one_step_student(self, folder: str | Path | None = None): ...


def _finite(what: str, value: float, minimum: float | None = None) -> None:
    """One line for a NaN, an infinity or a value below ``minimum`` (NaN scales silently
    turn every image into one repeated token)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MaskgenError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise MaskgenError(f"{what} must be >= {minimum:g}, got {value!r}")


def _choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MaskgenError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _from_dict(cls, data: dict[str, Any], what: str):
    if not isinstance(data, dict):
        raise MaskgenError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_fields(cls)))
    if unknown:
        raise MaskgenError(f"{what} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(_fields(cls)) or 'none'}")
    try:
        return cls(**data)
    except TypeError as e:
        raise MaskgenError(f"bad {what}: {e}") from None


class Registry(dict):
    """Name -> spec class, for the pieces a spec file names by ``kind``."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, cls):
        self[cls.kind] = cls
        return cls

    def lookup(self, name: str):
        if name not in self:
            raise MaskgenError(f"unknown {self.what} {name!r}; choose from {', '.join(self)}")
        return self[name]

    def from_dict(self, data: dict[str, Any]):
        if not isinstance(data, dict) or "kind" not in data:
            raise MaskgenError(f"a {self.what} spec needs a 'kind' ({', '.join(self)}), got {data!r}")
        cls = self.lookup(data["kind"])
        return _from_dict(cls, {k: v for k, v in data.items() if k != "kind"}, f"the {data['kind']} {self.what}")


class PieceSpec:
    kind: ClassVar[str] = ""
    default_steps: ClassVar[int | None] = None  # steps a sampler of this fill rule takes when none are given

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind}
        for k, v in dataclasses.asdict(self).items():
            out[k] = list(v) if isinstance(v, tuple) else v
        return out


# -- fill rules ----------------------------------------------------------------------------
FILLS = Registry("fill rule")


@FILLS.register
@dataclass
class ConfidenceSpec(PieceSpec):
    """MaskGIT's confidence rule (Chang et al. 2022): Gumbel temperature and its annealing."""

    kind: ClassVar[str] = "confidence"
    choice_temperature: float = 4.5
    annealing: str = "linear"
    counts: str = "maskgit"  # reveal counts per step (counts.py)

    def __post_init__(self) -> None:
        _finite("choice temperature", self.choice_temperature, 0.0)
        _choice("reveal counts", self.counts, COUNTS)
        if self.annealing in ("random", "random-order", "none") and self.choice_temperature != ConfidenceSpec.choice_temperature:
            raise MaskgenError(f"the choice temperature has no effect with annealing {self.annealing} (it scales no Gumbel noise); leave it out")

    def build(self, source: ComponentSource):
        from .fill import ConfidenceFill

        return ConfidenceFill(self.choice_temperature, self.annealing, self.counts)


@FILLS.register
@dataclass
class AncestralSpec(PieceSpec):
    """eMIGM's ancestral rule (You et al. 2025, Eq. 6): random positions. Three conventions
    of eMIGM (You et al. 2025) code's ``sample_tokens``, off by default (the paper's rule):
    ``equal_counts``: every image reveals as many as image 0's Bernoulli draws give, at its
    lowest uniforms; ``reveal_one``: a step where no image reveals a token reveals one random
    masked position per image (one more uniform per image); ``time_grid``: "exact"
    t = (T - i)/T, or "linspace": the code's float32 linspace(1, 1e-5, T + 1), on which the
    guidance interval is tested too (fill.py)."""

    kind: ClassVar[str] = "ancestral"
    equal_counts: bool = False
    reveal_one: bool = False
    time_grid: str = "exact"

    def __post_init__(self) -> None:
        for name in ("equal_counts", "reveal_one"):
            if not isinstance(getattr(self, name), bool):
                raise MaskgenError(f"ancestral {name} must be true or false, got {getattr(self, name)!r}")
        _choice("ancestral time grid", self.time_grid, ("exact", "linspace"))

    def build(self, source: ComponentSource):
        from .fill import AncestralFill

        return AncestralFill(self.equal_counts, self.reveal_one, self.time_grid)


@FILLS.register
@dataclass
class HaltonSpec(PieceSpec):
    """The Halton order (Besnier et al. 2025): a fixed low-discrepancy reveal order."""

    kind: ClassVar[str] = "halton"
    counts: str = "maskgit"  # reveal counts per step (counts.py); "halton": its code's own
    roll: bool = False  # a random cyclic shift of the order per image (its code's randomize)

    def __post_init__(self) -> None:
        _choice("reveal counts", self.counts, COUNTS)
        if not isinstance(self.roll, bool):
            raise MaskgenError(f"halton roll must be true or false, got {self.roll!r}")

    def build(self, source: ComponentSource):
        from .fill import HaltonFill

        return HaltonFill(self.counts, self.roll)


@FILLS.register
@dataclass
class FlowSpec(PieceSpec):
    """Discrete Interpolants' Euler step (Hu & Ommer 2025, Alg. 1)."""

    kind: ClassVar[str] = "flow"
    loop: str = "paper"  # "code": the authors' released loop (T - 1 passes, fill.py)

    def __post_init__(self) -> None:
        _choice("flow loop", self.loop, ("paper", "code"))

    def build(self, source: ComponentSource):
        from .fill import FlowEulerFill

        return FlowEulerFill(self.loop)


@FILLS.register
@dataclass
class CriticSpec(PieceSpec):
    """Token-Critic (Lezama et al. 2022, Alg. 2): selection noise K and token temperature a t + b."""

    kind: ClassVar[str] = "critic"
    critic: str | None = None  # folder; default <model>/critic
    noise: float = 1.0
    temperature: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        _finite("critic selection noise", self.noise, 0.0)
        if len(tuple(self.temperature)) != 2:
            raise MaskgenError(f"critic temperature is (a, b) of a t + b, got {self.temperature}")
        for v in self.temperature:
            _finite("critic temperature", v)
        self.temperature = tuple(float(v) for v in self.temperature)

    def build(self, source: ComponentSource):
        from .critic import CriticFill

        return CriticFill(source.critic(self.critic), self.noise, self.temperature)


@FILLS.register
@dataclass
class OneStepSpec(PieceSpec):
    """Di[M]O's one-step student (Zhu et al. 2025) in place of the generator's first pass (NFE 1
    at one step); any further step is the confidence rule on the generator (``sampling/one_step.py``)."""

    kind: ClassVar[str] = "one-step"
    default_steps: ClassVar[int | None] = 1
    student: str | None = None  # folder; default <model>/one-step
    r_init: float | None = None  # the [MASK] share of the student's input; None: the one it was distilled with
    choice_temperature: float = 4.5  # the confidence rule's, for the steps after the student's
    annealing: str = "linear"
    counts: str = "maskgit"

    def __post_init__(self) -> None:
        if self.r_init is not None:
            _finite("one-step r_init", self.r_init, 0.0)
            if self.r_init > 1.0:
                raise MaskgenError(f"one-step r_init must be <= 1, got {self.r_init!r}")
        ConfidenceSpec(self.choice_temperature, self.annealing, self.counts)  # the same checks

    def build(self, source: ComponentSource):
        from .one_step import OneStepFill

        return OneStepFill(source.one_step_student(self.student), self.r_init, self.choice_temperature, self.annealing, self.counts)


# -- guidance ------------------------------------------------------------------------------
GUIDANCES = Registry("guidance")


@dataclass
class GuidanceSpec(PieceSpec):
    """A guidance and its scale schedule (constant or linear ramp; active on lo < s <= hi)."""

    scale: float = 1.0
    ramp: str = "constant"
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _finite(f"{self.kind} guidance scale", self.scale)
        if self.interval is not None:
            self.interval = tuple(float(v) for v in self.interval)
        self.scale_schedule()  # validates

    def scale_schedule(self) -> GuidanceScale:
        return GuidanceScale(self.scale, self.ramp, self.interval)

    def build(self, source: ComponentSource) -> Guidance:
        raise NotImplementedError


@GUIDANCES.register
@dataclass
class CFGSpec(GuidanceSpec):
    """Classifier-free guidance: the weak branch is the unconditional input."""

    kind: ClassVar[str] = "cfg"

    def build(self, source):
        return ClassifierFreeGuidance(self.scale_schedule(), source.denoiser().null_class)


@GUIDANCES.register
@dataclass
class BlurSpec(GuidanceSpec):
    """Blur guidance on the logits over the token grid (self-guidance paper, Table 2)."""

    kind: ClassVar[str] = "blur"
    sigma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("blur sigma", self.sigma, 1e-6)

    def build(self, source):
        return BlurGuidance(self.scale_schedule(), source.denoiser().grid, self.sigma)


@GUIDANCES.register
@dataclass
class SAGSpec(GuidanceSpec):
    """Self-attention guidance with re-masking (self-guidance paper, Table 2)."""

    kind: ClassVar[str] = "sag"
    threshold: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("SAG threshold", self.threshold)

    def build(self, source):
        return SelfAttentionGuidance(self.scale_schedule(), source.denoiser().mask_id, self.threshold)


@GUIDANCES.register
@dataclass
class SelfSpec(GuidanceSpec):
    """Self-guidance (Hur et al. 2024, Eq. 6) with a fine-tuned TOAST module."""

    kind: ClassVar[str] = "self"
    module: str | None = None  # folder; default <model>/self-guidance

    def build(self, source):
        return SelfGuidance(self.scale_schedule(), source.self_guidance_module(self.module))


# -- the sampler ---------------------------------------------------------------------------
