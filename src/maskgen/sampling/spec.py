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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MaskgenError
from ..schedules import get_schedule
from .counts import check_counts
from .draw import TokenDraw
from .head_sampler import HeadSampling
from .loop import Sampler
from .pieces import (  # noqa: F401 - the piece specs are part of this module's interface
    FILLS,
    GUIDANCES,
    AncestralSpec,
    BlurSpec,
    CFGSpec,
    ComponentSource,
    ConfidenceSpec,
    CriticSpec,
    FlowSpec,
    GuidanceSpec,
    HaltonSpec,
    OneStepSpec,
    PieceSpec,
    Registry,
    SAGSpec,
    SelfSpec,
    _fields,
    _from_dict,
)


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
            self.draw = _from_dict(TokenDraw, self.draw, "the token draw")
        if isinstance(self.head, dict):
            self.head = _from_dict(HeadSampling, self.head, "the head sampler")
        self.guidance = [GUIDANCES.from_dict(g) if isinstance(g, dict) else g for g in self.guidance]
        for what, value, kind in (("fill", self.fill, PieceSpec), ("draw", self.draw, TokenDraw), *(("guidance entry", g, GuidanceSpec) for g in self.guidance)):
            if not isinstance(value, kind):
                raise MaskgenError(f"{what} must be a mapping with its options, got {value!r}")
        if self.head is not None and not isinstance(self.head, HeadSampling):
            raise MaskgenError(f"head must be a mapping with the head sampler's options, got {self.head!r}")
        if self.fill.kind == "critic" and (self.draw.temperature != 1.0 or self.draw.temperature_end is not None):
            # the critic rule anneals the token temperature itself; two temperatures would compound
            raise MaskgenError("the critic fill rule sets the token temperature (a t + b, --critic-temperature); leave the draw temperature at 1")
        if sum(g.kind == "cfg" for g in self.guidance) > 1:
            raise MaskgenError("classifier-free guidance given twice")
        if hasattr(self.fill, "counts"):
            check_counts(self.fill.counts, self.schedule, self.steps)
        if getattr(self.fill, "loop", "paper") == "code" and self.steps < 2:
            raise MaskgenError("the flow rule's code loop runs T - 1 passes; give at least 2 steps")

    def build(self, source: ComponentSource):
        """The ``Sampler`` this spec describes, on ``source``'s denoiser; guidances with
        scale 0 cost nothing and are not built (a self-guidance module is not even loaded)."""
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
        """A spec from ``maskgen sample``'s flat option names; options left out (or None)
        take the spec's defaults, or with ``preset`` the preset's settings, which the other
        options override field by field (a different ``sampler`` replaces the preset's fill
        rule; ``cfg`` its CFG scale; ``guidance none`` drops its other guidances). An option
        the chosen piece does not have is refused."""
        o = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(o) - set(FLAT_OPTIONS))
        if unknown:
            raise MaskgenError(f"unknown sampler option(s) {', '.join(unknown)}")
        base = cls.preset(o.pop("preset")) if "preset" in o else cls()
        rule = o.pop("sampler", o.pop("fill", None)) or base.fill.kind
        fill_cls = FILLS.lookup(rule)
        fill_opts = _owned(o, FILL_OPTIONS, rule, fill_cls, "fill rule")
        fill = dataclasses.replace(base.fill, **fill_opts) if rule == base.fill.kind else fill_cls(**fill_opts)
        draw = dataclasses.replace(base.draw, **{k: o.pop(k) for k in _fields(TokenDraw) if k in o})
        head_opts = {k: o.pop(f"head_{k}") for k in _fields(HeadSampling) if f"head_{k}" in o}
        head = base.head
        if head_opts:
            same = head is not None and head_opts.get("sampler", head.sampler) == head.sampler
            keep = dataclasses.asdict(head) if same else {}
            head = HeadSampling(**{**keep, **head_opts})
        guidance: list[GuidanceSpec] = list(base.guidance)
        cfg = {k: o.pop(f"cfg_{k}") for k in ("ramp", "interval") if f"cfg_{k}" in o}
        old_cfg = next((g for g in guidance if g.kind == "cfg"), None)
        if "cfg" in o or (cfg and old_cfg is not None):
            scale = o.pop("cfg", old_cfg.scale if old_cfg is not None else None)
            new_cfg = dataclasses.replace(old_cfg, scale=scale, **cfg) if old_cfg is not None else CFGSpec(scale=scale, **cfg)
            guidance = [new_cfg if g is old_cfg else g for g in guidance] if old_cfg is not None else guidance + [new_cfg]
        elif cfg:
            raise MaskgenError(f"--cfg-{next(iter(cfg))} given without --cfg")
        name = o.pop("guidance", None)
        common = {k: o.pop(k) for k in ("scale", "ramp", "interval") if k in o}
        if name == "none":
            guidance = [g for g in guidance if g.kind == "cfg"]
        if name not in (None, "none"):
            gcls = GUIDANCES.lookup(name)
            extra = _owned(o, GUIDANCE_OPTIONS, name, gcls, "guidance")
            guidance = guidance + [gcls(**common, **extra)]
        elif common:
            raise MaskgenError(f"--{next(iter(common))} applies to --guidance, which is none")
        leftover = sorted(k for k in o if k not in ("steps", "schedule"))
        if leftover:
            owner = {k: f"the {g} guidance" for g, ks in GUIDANCE_OPTIONS.items() for k in ks}
            for r, ks in reversed(FILL_OPTIONS.items()):  # an option several rules share: named after the first
                owner.update({k: f"the {r} fill rule" for k in ks})
            k = leftover[0]
            raise MaskgenError(f"--{k.replace('_', '-')} applies to {owner.get(k, 'nothing chosen')}, not to this sampler (fill rule {rule}, guidance {name or 'none'})")
        if "steps" not in o and rule != base.fill.kind and fill_cls.default_steps is not None:
            o["steps"] = fill_cls.default_steps  # a rule's own default (the one-step student: 1)
        run = {k: o.get(k, getattr(base, k)) for k in ("steps", "schedule")}
        return cls(**run, fill=fill, draw=draw, guidance=guidance, head=head)

    def replace(self, **changes: Any) -> "SamplerSpec":
        return dataclasses.replace(self, **changes)


# flat option name -> spec field, per piece
FILL_OPTIONS = {
    "confidence": {"choice_temperature": "choice_temperature", "annealing": "annealing", "counts": "counts"},
    "ancestral": {"ancestral_equal_counts": "equal_counts", "ancestral_reveal_one": "reveal_one", "ancestral_time_grid": "time_grid"},
    "halton": {"counts": "counts", "halton_roll": "roll"},
    "flow": {"flow_loop": "loop"},
    "critic": {"critic": "critic", "critic_noise": "noise", "critic_temperature": "temperature"},
    "one-step": {"student": "student", "student_r_init": "r_init", "choice_temperature": "choice_temperature", "annealing": "annealing", "counts": "counts"},
}
GUIDANCE_OPTIONS = {"cfg": {}, "blur": {"blur_sigma": "sigma"}, "sag": {"sag_threshold": "threshold"}, "self": {"sg_module": "module"}}
FLAT_OPTIONS = (
    ["preset", "sampler", "fill", "steps", "schedule", "cfg", "cfg_ramp", "cfg_interval", "guidance", "scale", "ramp", "interval"]
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
