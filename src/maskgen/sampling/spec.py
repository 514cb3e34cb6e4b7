"""A sampler is data: ``SamplerSpec`` says everything the loop does, and ``spec.build(model)``
makes the ``Sampler``.

    spec = SamplerSpec(steps=18, fill=ConfidenceSpec(choice_temperature=25, annealing="compound"),
                       guidance=[SelfSpec(scale=1.0), CFGSpec(scale=2.0, interval=(0.1, 0.3))])
    sampler = spec.build(model)          # model: a ``MaskGen`` (generator + its components)

A spec holds the number of steps, the schedule, a fill spec (one of ``registry.FILLS``, by name), the
token draw (``TokenDraw``, itself a dataclass), for a continuous-token generator the head
sampler instead (``HeadSampling``: a diffusion head draws its tokens), and any number of
guidance specs (``registry.GUIDANCES``), each with its scale schedule. The defaults live here and
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MaskgenError
from ..schedules import get_schedule
from . import fills, guidances  # noqa: F401 - their modules register the pieces
from .draw import TokenDraw
from .fills.ancestral import AncestralSpec  # noqa: F401 - the piece specs are part of this module's interface
from .fills.confidence import ConfidenceSpec
from .fills.critic import CriticSpec  # noqa: F401
from .fills.flow import FlowSpec  # noqa: F401
from .fills.halton import HaltonSpec  # noqa: F401
from .fills.one_step import OneStepSpec  # noqa: F401
from .guidance import GuidanceSpec
from .guidances.blur import BlurSpec  # noqa: F401
from .guidances.cfg import CFGSpec  # noqa: F401
from .guidances.sag import SAGSpec  # noqa: F401
from .guidances.self import SelfSpec  # noqa: F401
from .head_sampler import HeadSampling
from .loop import Sampler
from .registry import FILLS, GUIDANCES, ComponentSource, PieceSpec, field_names, from_dict, options_of


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
        if not isinstance(self.schedule, str):
            raise MaskgenError(f"schedule must be a schedule name, got {self.schedule!r}")
        self.schedule = get_schedule(self.schedule).name
        if not isinstance(self.guidance, (list, tuple)):  # a lone {kind: cfg} would iterate as its keys
            raise MaskgenError(f"guidance must be a list of guidance specs (each with a kind), got {type(self.guidance).__name__} {self.guidance!r}")
        if isinstance(self.fill, dict):
            self.fill = FILLS.from_dict(self.fill)
        if isinstance(self.draw, dict):
            self.draw = from_dict(TokenDraw, self.draw, "the token draw")
        if isinstance(self.head, dict):
            self.head = from_dict(HeadSampling, self.head, "the head sampler")
        self.guidance = [GUIDANCES.from_dict(g) if isinstance(g, dict) else g for g in self.guidance]
        for what, value, kind in (("fill", self.fill, PieceSpec), ("draw", self.draw, TokenDraw), *(("guidance entry", g, GuidanceSpec) for g in self.guidance)):
            if not isinstance(value, kind):
                raise MaskgenError(f"{what} must be a mapping with its options, got {value!r}")
        if self.head is not None and not isinstance(self.head, HeadSampling):
            raise MaskgenError(f"head must be a mapping with the head sampler's options, got {self.head!r}")
        if self.fill.owns_temperature and (self.draw.temperature != 1.0 or self.draw.temperature_end is not None):
            # a rule that anneals the token temperature itself; two temperatures would compound
            raise MaskgenError(f"the {self.fill.kind} fill rule sets the token temperature ({self.fill.owns_temperature}); leave the draw temperature at 1")
        for kind, cls in GUIDANCES.items():
            if cls.once and sum(g.kind == kind for g in self.guidance) > 1:
                raise MaskgenError(f"{cls.once} given twice")
        self.fill.check_run(self.steps, self.schedule)

    def build(self, source: ComponentSource):
        """The ``Sampler`` this spec describes, on ``source``'s denoiser; guidances with
        scale 0 cost nothing and are not built (a self-guidance module is not even loaded)."""
        denoiser = source.denoiser()
        spec = self.for_model(denoiser)
        built = [g.build(source) for g in spec.guidance if g.scale != 0.0]
        draw = spec.head if spec.head is not None else spec.draw
        return Sampler(denoiser, spec.fill.build(source), draw, spec.steps, spec.schedule, built, spec=spec)

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
        return from_dict(cls, data, "the sampler spec")

    @classmethod
    def from_file(cls, path: str | Path) -> "SamplerSpec":
        """A spec from JSON or YAML: a spec itself, or a ``samples.json`` (its ``sampler`` entry)."""
        data = read_spec_file(path)
        try:
            return cls.from_dict(data.get("sampler", data))
        except MaskgenError as e:  # name the file: the spec may be a samples.json from anywhere
            raise MaskgenError(f"spec file {path}: {e}") from None

    @classmethod
    def preset(cls, name: str) -> "SamplerSpec":
        """The sampler of an authors' codebase, shipped as ``presets/NAME.yaml`` (docs/presets.md)."""
        return cls.from_dict(read_spec_file(preset_path(name)))

    @classmethod
    def from_options(cls, **options: Any) -> "SamplerSpec":
        """A spec from ``maskgen sample``'s flat option names (``flat_options``); options left
        out (or None) take the spec's defaults, or with ``preset`` the preset's settings, which the
        other options override field by field (a different ``sampler`` replaces the preset's fill
        rule; ``cfg`` its CFG scale; ``guidance none`` drops its other guidances). An option the
        chosen piece does not have is refused."""
        o = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(o) - set(flat_options()))
        if unknown:
            raise MaskgenError(f"unknown sampler option(s) {', '.join(unknown)}")
        base = cls.preset(o.pop("preset")) if "preset" in o else cls()
        rule = o.pop("sampler", o.pop("fill", None)) or base.fill.kind
        fill_cls = FILLS.lookup(rule)
        fill_opts = owned(o, fill_cls)
        fill = dataclasses.replace(base.fill, **fill_opts) if rule == base.fill.kind else fill_cls(**fill_opts)
        draw = dataclasses.replace(base.draw, **{k: o.pop(k) for k in field_names(TokenDraw) if k in o})
        head_opts = {k: o.pop(f"head_{k}") for k in field_names(HeadSampling) if f"head_{k}" in o}
        head = base.head
        if head_opts:
            same = head is not None and head_opts.get("sampler", head.sampler) == head.sampler
            keep = dataclasses.asdict(head) if same else {}
            head = HeadSampling(**{**keep, **head_opts})
        guidance: list[GuidanceSpec] = list(base.guidance)
        for gcls in GUIDANCES.values():  # a guidance with flags of its own (--cfg, --cfg-ramp, --cfg-interval)
            if gcls.shorthand:
                guidance = with_shorthand(o, gcls, guidance)
        name = o.pop("guidance", None)
        common = {k: o.pop(k) for k in ("scale", "ramp", "interval") if k in o}
        if name == "none":
            guidance = [g for g in guidance if GUIDANCES[g.kind].shorthand]
        if name not in (None, "none"):
            gcls = GUIDANCES.lookup(name)
            guidance = guidance + [gcls(**common, **owned(o, gcls))]
        elif common:
            raise MaskgenError(f"--{next(iter(common))} applies to --guidance, which is none")
        leftover = sorted(k for k in o if k not in ("steps", "schedule"))
        if leftover:
            owner = {k: f"the {g} guidance" for g, ks in guidance_options().items() for k in ks}
            for r, ks in reversed(fill_options().items()):  # an option several rules share: named after the first
                owner.update({k: f"the {r} fill rule" for k in ks})
            k = leftover[0]
            raise MaskgenError(f"--{k.replace('_', '-')} applies to {owner.get(k, 'nothing chosen')}, not to this sampler (fill rule {rule}, guidance {name or 'none'})")
        if "steps" not in o and rule != base.fill.kind and fill_cls.default_steps is not None:
            o["steps"] = fill_cls.default_steps  # a rule's own default (the one-step student: 1)
        run = {k: o.get(k, getattr(base, k)) for k in ("steps", "schedule")}
        return cls(**run, fill=fill, draw=draw, guidance=guidance, head=head)

    def replace(self, **changes: Any) -> "SamplerSpec":
        return dataclasses.replace(self, **changes)


def fill_options() -> dict[str, dict[str, str]]:
    """{fill rule: {flat option name: its spec field}}, from the registry."""
    return {kind: {flag: f.name for flag, f in options_of(cls).items()} for kind, cls in FILLS.items()}


def guidance_options() -> dict[str, dict[str, str]]:
    """{guidance: {flat option name: its spec field}} (besides the scale schedule's), from the registry."""
    return {kind: {flag: f.name for flag, f in options_of(cls).items()} for kind, cls in GUIDANCES.items()}


def shorthand_options() -> list[str]:
    """The options of the guidances with flags of their own: ``cfg``, ``cfg_ramp``, ``cfg_interval``."""
    return [f"{g.shorthand}{suffix}" for g in GUIDANCES.values() if g.shorthand for suffix in ("", "_ramp", "_interval")]


def flat_options() -> list[str]:
    """Every flat option name ``SamplerSpec.from_options`` (and ``maskgen sample``) takes."""
    names = (["preset", "sampler", "fill", "steps", "schedule", *shorthand_options(), "guidance", "scale", "ramp", "interval"]
             + field_names(TokenDraw) + [f"head_{k}" for k in field_names(HeadSampling)]
             + [k for ks in fill_options().values() for k in ks] + [k for ks in guidance_options().values() for k in ks])
    return list(dict.fromkeys(names))


def owned(options: dict[str, Any], cls) -> dict[str, Any]:
    """Pop the flat options that belong to piece ``cls``, renamed to its spec fields."""
    return {f.name: options.pop(flag) for flag, f in options_of(cls).items() if flag in options}


def with_shorthand(o: dict[str, Any], gcls, guidance: list) -> list:
    """``guidance`` with the guidance ``gcls`` that ``--cfg`` (``--cfg-ramp``, ``--cfg-interval``)
    describes: added, or the one there (a preset's) updated."""
    s = gcls.shorthand
    extra = {k: o.pop(f"{s}_{k}") for k in ("ramp", "interval") if f"{s}_{k}" in o}
    old = next((g for g in guidance if g.kind == gcls.kind), None)
    if s in o or (extra and old is not None):
        scale = o.pop(s, old.scale if old is not None else None)
        new = dataclasses.replace(old, scale=scale, **extra) if old is not None else gcls(scale=scale, **extra)
        return [new if g is old else g for g in guidance] if old is not None else guidance + [new]
    if extra:
        raise MaskgenError(f"--{s}-{next(iter(extra))} given without --{s}")
    return guidance


PRESET_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """The shipped presets, one per authors' codebase (``presets/NAME.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    if name not in preset_names():
        raise MaskgenError(f"unknown sampler preset {name!r}; choose from {', '.join(preset_names())}")
    return PRESET_DIR / f"{name}.yaml"


def read_spec_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MaskgenError(f"spec file does not exist: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise MaskgenError(f"spec file {path} is not a text file (JSON or YAML)") from None
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
