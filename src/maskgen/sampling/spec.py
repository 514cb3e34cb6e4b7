"""A sampler is data: ``SamplerSpec`` says everything the loop does, and ``spec.build(model)``
makes the ``Sampler``.

    spec = SamplerSpec(steps=18, fill=ConfidenceSpec(choice_temperature=25, annealing="compound"),
                       guidance=[SelfSpec(scale=1.0), CFGSpec(scale=2.0, interval=(0.1, 0.3))])
    sampler = spec.build(model)          # model: a ``MaskGen`` (generator + its components)

A spec holds the number of steps, the schedule, a fill spec (one of ``FILLS``, by name), the
token draw (``TokenDraw``, itself a dataclass), for a continuous-token generator the head
sampler instead (``HeadSampling``: a diffusion head draws its tokens), and any number of
guidance specs (``GUIDANCES``), each with its scale schedule. The defaults live here and
nowhere else: the CLI, recipes, benchmarks and the Python API all fill a spec. ``to_dict`` is what ``samples.json`` stores,
and ``SamplerSpec.from_dict`` of it rebuilds the same sampler, so a sample set replays bit for
bit. ``from_dict`` refuses unknown keys and options a chosen piece does not have; a piece
refuses a model it cannot work on (``build`` raises one line).

``from_options`` translates the flat option names of ``maskgen sample`` (``sampler``,
``choice_temperature``, ``cfg``, ``guidance``, ``scale`` ...) into a spec, so a recipe or a
benchmark row written in those names goes through the same checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..errors import MaskgenError
from ..schedules import get_schedule
from .head_sampler import HeadSampling
from .draw import TokenDraw
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


def _finite(what: str, value: float, minimum: float | None = None) -> None:
    """One line for a NaN, an infinity or a value below ``minimum`` (NaN scales silently
    turn every image into one repeated token)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MaskgenError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise MaskgenError(f"{what} must be >= {minimum:g}, got {value!r}")


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

    def __post_init__(self) -> None:
        _finite("choice temperature", self.choice_temperature, 0.0)

    def build(self, source: ComponentSource):
        from .fill import ConfidenceFill

        return ConfidenceFill(self.choice_temperature, self.annealing)


@FILLS.register
@dataclass
class AncestralSpec(PieceSpec):
    """eMIGM's ancestral rule (You et al. 2025, Eq. 6): random positions."""

    kind: ClassVar[str] = "ancestral"

    def build(self, source: ComponentSource):
        from .fill import AncestralFill

        return AncestralFill()


@FILLS.register
@dataclass
class FlowSpec(PieceSpec):
    """Discrete Interpolants' Euler step (Hu & Ommer 2025, Alg. 1)."""

    kind: ClassVar[str] = "flow"

    def build(self, source: ComponentSource):
        from .fill import FlowEulerFill

        return FlowEulerFill()


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
def _fill_default() -> PieceSpec:
    return ConfidenceSpec()


@dataclass
class SamplerSpec:
    """Steps, schedule, fill rule, token draw (or head sampler) and guidances: everything the loop does."""

    steps: int = 8
    schedule: str = "cosine"
    fill: PieceSpec = field(default_factory=_fill_default)
    draw: TokenDraw = field(default_factory=TokenDraw)
    guidance: list[GuidanceSpec] = field(default_factory=list)
    head: HeadSampling | None = None  # continuous-token generators only; None: HeadSampling's defaults

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise MaskgenError(f"steps must be an integer >= 1, got {self.steps!r}")
        self.schedule = get_schedule(self.schedule).name
        if isinstance(self.fill, dict):
            self.fill = FILLS.from_dict(self.fill)
        if isinstance(self.draw, dict):
            self.draw = _from_dict(TokenDraw, self.draw, "the token draw")
        if isinstance(self.head, dict):
            self.head = _from_dict(HeadSampling, self.head, "the head sampler")
        self.guidance = [GUIDANCES.from_dict(g) if isinstance(g, dict) else g for g in self.guidance]
        if self.fill.kind == "critic" and self.draw.temperature != 1.0:
            # the critic rule anneals the token temperature itself; two temperatures would compound
            raise MaskgenError("the critic fill rule sets the token temperature (a t + b, --critic-temperature); leave the draw temperature at 1")
        if sum(g.kind == "cfg" for g in self.guidance) > 1:
            raise MaskgenError("classifier-free guidance given twice")

    def build(self, source: ComponentSource):
        """The ``Sampler`` this spec describes, on ``source``'s denoiser; guidances with
        scale 0 cost nothing and are not built (a self-guidance module is not even loaded)."""
        from .loop import Sampler

        denoiser = source.denoiser()
        spec = self.for_model(denoiser)
        guidances = [g.build(source) for g in spec.guidance if g.scale != 0.0]
        draw = spec.head if spec.head is not None else spec.draw
        return Sampler(denoiser, spec.fill.build(source), draw, spec.steps, spec.schedule, guidances, spec=spec)

    def for_model(self, denoiser) -> "SamplerSpec":
        """This spec as it runs on ``denoiser``: a continuous-token generator gets the head
        sampler's defaults if none was given (so a result records them); a token draw
        option on a continuous model, or head settings on a discrete one, is refused."""
        if not denoiser.continuous:
            if self.head is not None:
                raise MaskgenError("head sampler settings apply to a continuous-token generator; this one draws discrete tokens")
            return self
        changed = [f.name for f in dataclasses.fields(TokenDraw) if getattr(self.draw, f.name) != f.default]
        if changed:
            raise MaskgenError(f"{', '.join(changed)} of the token draw applies to discrete tokens; a continuous-token generator draws with its diffusion head (head sampler, steps, temperature)")
        return self if self.head is not None else self.replace(head=HeadSampling())

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "schedule": self.schedule,
            "fill": self.fill.to_dict(),
            "draw": dataclasses.asdict(self.draw),
            "guidance": [g.to_dict() for g in self.guidance],
            **({"head": dataclasses.asdict(self.head)} if self.head is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SamplerSpec":
        return _from_dict(cls, data, "the sampler spec")

    @classmethod
    def from_file(cls, path: str | Path) -> "SamplerSpec":
        """A spec from JSON or YAML: a spec itself, or a ``samples.json`` (its ``sampler`` entry)."""
        return cls.from_dict(read_spec_file(path).get("sampler", read_spec_file(path)))

    @classmethod
    def from_options(cls, **options: Any) -> "SamplerSpec":
        """A spec from ``maskgen sample``'s flat option names; options left out (or None)
        take the spec's defaults, an option the chosen piece does not have is refused."""
        o = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(o) - set(FLAT_OPTIONS))
        if unknown:
            raise MaskgenError(f"unknown sampler option(s) {', '.join(unknown)}")
        rule = o.pop("sampler", o.pop("fill", None)) or _fill_default().kind
        fill_cls = FILLS.lookup(rule)
        fill_opts = _owned(o, FILL_OPTIONS, rule, fill_cls, "fill rule")
        draw = TokenDraw(**{k: o.pop(k) for k in _fields(TokenDraw) if k in o})
        head_opts = {k: o.pop(f"head_{k}") for k in _fields(HeadSampling) if f"head_{k}" in o}
        head = HeadSampling(**head_opts) if head_opts else None
        guidance: list[GuidanceSpec] = []
        cfg = {k: o.pop(f"cfg_{k}") for k in ("ramp", "interval") if f"cfg_{k}" in o}
        if "cfg" in o:
            guidance.append(CFGSpec(scale=o.pop("cfg"), **cfg))
        elif cfg:
            raise MaskgenError(f"--cfg-{next(iter(cfg))} given without --cfg")
        name = o.pop("guidance", "none")
        common = {k: o.pop(k) for k in ("scale", "ramp", "interval") if k in o}
        if name != "none":
            gcls = GUIDANCES.lookup(name)
            extra = _owned(o, GUIDANCE_OPTIONS, name, gcls, "guidance")
            guidance.append(gcls(**common, **extra))
        elif common:
            raise MaskgenError(f"--{next(iter(common))} applies to --guidance, which is none")
        leftover = sorted(k for k in o if k not in ("steps", "schedule"))
        if leftover:
            owner = {**{k: f"the {r} fill rule" for r, ks in FILL_OPTIONS.items() for k in ks}, **{k: f"the {g} guidance" for g, ks in GUIDANCE_OPTIONS.items() for k in ks}}
            k = leftover[0]
            raise MaskgenError(f"--{k.replace('_', '-')} applies to {owner.get(k, 'nothing chosen')}, not to this sampler (fill rule {rule}, guidance {name})")
        run = {k: o[k] for k in ("steps", "schedule") if k in o}  # the rest: the spec's own defaults
        return cls(**run, fill=fill_cls(**fill_opts), draw=draw, guidance=guidance, head=head)

    def replace(self, **changes: Any) -> "SamplerSpec":
        return dataclasses.replace(self, **changes)


# flat option name -> spec field, per piece
FILL_OPTIONS = {
    "confidence": {"choice_temperature": "choice_temperature", "annealing": "annealing"},
    "ancestral": {},
    "flow": {},
    "critic": {"critic": "critic", "critic_noise": "noise", "critic_temperature": "temperature"},
}
GUIDANCE_OPTIONS = {"cfg": {}, "blur": {"blur_sigma": "sigma"}, "sag": {"sag_threshold": "threshold"}, "self": {"sg_module": "module"}}
FLAT_OPTIONS = (
    ["sampler", "fill", "steps", "schedule", "cfg", "cfg_ramp", "cfg_interval", "guidance", "scale", "ramp", "interval"]
    + _fields(TokenDraw)
    + [f"head_{k}" for k in _fields(HeadSampling)]
    + [k for ks in FILL_OPTIONS.values() for k in ks]
    + [k for ks in GUIDANCE_OPTIONS.values() for k in ks]
)


def _owned(options: dict[str, Any], table: dict[str, dict[str, str]], name: str, cls, what: str) -> dict[str, Any]:
    """Pop the flat options that belong to piece ``name``, renamed to its spec fields."""
    if name not in table:
        raise MaskgenError(f"unknown {what} {name!r}")
    return {field_name: options.pop(flat) for flat, field_name in table[name].items() if flat in options}


def read_spec_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"spec file does not exist: {path}")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the same one-line message
        raise MaskgenError(f"malformed spec file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MaskgenError(f"spec file {path} must hold a mapping")
    return data
