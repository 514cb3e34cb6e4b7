"""The registry of sampler pieces: one per kind of piece (``FILLS``: fill rules, ``GUIDANCES``:
guidances), where each piece's spec class registers itself under its ``kind``. A piece is one
file (``fills/<rule>.py``, ``guidances/<guidance>.py``) holding its spec (a small dataclass
that checks its settings and builds the runtime object) and the runtime class; every module in
those folders is imported, so a new piece is a new file there.

Everything else is derived from the registry and the specs' fields: the flat option names of
``maskgen sample`` (a field's ``option(...)`` metadata: its flag and help), spec files
(``to_dict``/``from_dict``), ``maskgen tune``'s search space (a spec's ``search``: the range of
each tuned field) and the app's sampler menu (``menu``). ``rank`` orders a kind's pieces where
they are listed (help, errors), ``menu`` in the app, ``search_rank`` in tune's proposals; a
piece that sets none comes last.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..errors import MaskgenError


def finite(what: str, value: float, minimum: float | None = None) -> None:
    """One line for a NaN, an infinity or a value below ``minimum`` (NaN scales silently
    turn every image into one repeated token)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MaskgenError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise MaskgenError(f"{what} must be >= {minimum:g}, got {value!r}")


def choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MaskgenError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(cls, data: dict[str, Any], what: str):
    """``cls(**data)``, an unknown key or a bad value refused in one line naming ``what``."""
    if not isinstance(data, dict):
        raise MaskgenError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(field_names(cls)))
    if unknown:
        raise MaskgenError(f"{what} has no option {', '.join(map(repr, unknown))}; its options: {', '.join(field_names(cls)) or 'none'}")
    try:
        return cls(**data)
    except TypeError as e:
        raise MaskgenError(f"bad {what}: {e}") from None


def option(flag: str, help: str, **argparse: Any) -> dict[str, Any]:
    """A spec field's ``metadata``: its flat option name (``--flag`` on the command line, the
    keyword of ``SamplerSpec.from_options``) and help, plus argparse settings the field's
    default does not imply (``type``, ``nargs``, ``metavar``, ``action``)."""
    return {"flag": flag, "help": help, **argparse}


def options_of(cls) -> dict[str, dataclasses.Field]:
    """{flat option name: field} of the fields of spec ``cls`` that have one (``option``)."""
    return {f.metadata["flag"]: f for f in dataclasses.fields(cls) if "flag" in f.metadata}


class Registry(dict):
    """Name -> spec class, for the pieces a spec file names by ``kind``."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def register(self, cls):
        self[cls.kind] = cls
        ranked = sorted(self.values(), key=lambda c: c.rank)  # listed by rank, then in registration order
        self.clear()
        self.update((c.kind, c) for c in ranked)
        return cls

    def lookup(self, name: str):
        if name not in self:
            raise MaskgenError(f"unknown {self.what} {name!r}; choose from {', '.join(self)}")
        return self[name]

    def from_dict(self, data: dict[str, Any]):
        if not isinstance(data, dict) or "kind" not in data:
            raise MaskgenError(f"a {self.what} spec needs a 'kind' ({', '.join(self)}), got {data!r}")
        cls = self.lookup(data["kind"])
        return from_dict(cls, {k: v for k, v in data.items() if k != "kind"}, f"the {data['kind']} {self.what}")

    def by(self, order: str) -> list:
        """The spec classes sorted by their ``order`` ClassVar (``menu``, ``search_rank``)."""
        return sorted(self.values(), key=lambda c: getattr(c, order))

    def owners(self) -> dict[str, list[str]]:
        """{flat option name: the kinds whose spec has it}, in rank order."""
        out: dict[str, list[str]] = {}
        for kind, cls in self.items():
            for flag in options_of(cls):
                out.setdefault(flag, []).append(kind)
        return out


class ComponentSource(Protocol):
    """What ``build`` needs besides the denoiser: networks trained on the generator (a pipeline)."""

    def denoiser(self): ...
    def critic(self, folder: str | Path | None = None): ...
    def self_guidance_module(self, folder: str | Path | None = None): ...
    def one_step_student(self, folder: str | Path | None = None): ...


class PieceSpec:
    """A piece's spec: a dataclass registered by ``kind`` that builds its runtime object."""

    kind: ClassVar[str] = ""
    about: ClassVar[str] = ""  # the method in a few words, for --help (e.g. "MaskGIT")
    rank: ClassVar[float] = math.inf  # its place where the pieces of its kind are listed
    menu: ClassVar[float] = math.inf  # its place in the app's sampler menu
    search: ClassVar[dict[str, Any] | None] = None  # tune's range per tuned field ({}: tuned at its defaults; None: not tuned)
    search_rank: ClassVar[float] = math.inf  # its place among tune's choices (proposals draw from them in this order)
    default_steps: ClassVar[int | None] = None  # steps a sampler of this fill rule takes when none are given
    owns_temperature: ClassVar[str | None] = None  # how a rule sets the token temperature itself (the draw's stays at 1)
    shorthand: ClassVar[str | None] = None  # a guidance whose scale, ramp and interval have flags of their own (--cfg ...)
    once: ClassVar[str | None] = None  # a guidance a sampler takes at most once: its name in the refusal

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind}
        for k, v in dataclasses.asdict(self).items():
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def check_run(self, steps: int, schedule: str) -> None:
        """Refuse a number of steps or a schedule this piece cannot run (checked by the spec)."""

    def brief(self) -> str:
        """Its settings in a few words, for tune's tables ("" when its name says enough)."""
        return ""

    def build(self, source):
        raise NotImplementedError


FILLS = Registry("fill rule")
GUIDANCES = Registry("guidance")
DENOISERS: dict[str, type] = {}
"""generator kind (its ``checkpoint_kind``) -> the denoiser the loop sees it through (``denoiser.py``'s
contract): how a model type plugs into the one loop."""


def denoiser_for(kind: str):
    """Register the decorated denoiser class as the loop's view of generators of ``kind``."""

    def register(cls):
        DENOISERS[kind] = cls
        return cls

    return register


# -- tune's ranges: each draws a value for a proposal and moves one a little for a refinement --
@dataclass(frozen=True)
class Uniform:
    lo: float
    hi: float
    step: float  # standard deviation of a refinement's move

    def draw(self, rng: random.Random) -> float:
        return round(rng.uniform(self.lo, self.hi), 3)

    def perturb(self, value: float, rng: random.Random) -> float:
        return clip(value + rng.gauss(0.0, self.step), self.lo, self.hi)


@dataclass(frozen=True)
class LogUniform(Uniform):
    def draw(self, rng: random.Random) -> float:
        return round(math.exp(rng.uniform(math.log(self.lo), math.log(self.hi))), 3)

    def perturb(self, value: float, rng: random.Random) -> float:
        return clip(value * math.exp(rng.gauss(0.0, self.step)), self.lo, self.hi)


@dataclass(frozen=True)
class OneOf:
    """One of two choices; a refinement switches with probability ``flip``."""

    choices: tuple[str, str]
    flip: float = 0.15

    def draw(self, rng: random.Random) -> str:
        return rng.choice(self.choices)

    def perturb(self, value: str, rng: random.Random) -> str:
        return value if rng.random() > self.flip else (self.choices[0] if value == self.choices[1] else self.choices[1])


@dataclass(frozen=True)
class Interval:
    """An optional interval (lo, hi]: off with probability ``off``, else lo in [0, ``lo_max``] and
    hi at least ``width`` above; a refinement switches it on (as ``default``) or off with
    probability ``flip``, else moves both ends by ``step`` (sd), keeping ``min_width``."""

    lo_max: float
    width: float
    default: tuple[float, float]
    off: float = 0.5
    flip: float = 0.15
    step: float = 0.05
    min_width: float = 0.05

    def draw(self, rng: random.Random) -> tuple[float, float] | None:
        lo = round(rng.uniform(0.0, self.lo_max), 3)
        return None if rng.random() < self.off else (lo, round(rng.uniform(lo + self.width, 1.0), 3))

    def perturb(self, value, rng: random.Random):
        if rng.random() < self.flip:
            return None if value else self.default
        if not value:
            return value
        lo = clip(value[0] + rng.gauss(0.0, self.step), 0.0, self.lo_max)
        return (lo, clip(value[1] + rng.gauss(0.0, self.step), lo + self.min_width, 1.0))


def clip(x: float, lo: float, hi: float) -> float:
    return round(min(max(x, lo), hi), 3)
