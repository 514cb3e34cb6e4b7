"""What the app's page may ask for, checked: each bad value ends in one ``MaskgenError``
line, which the server returns as JSON with HTTP 400 and the page shows.

A request names a class, a fill rule and its settings in the flat option names of
``maskgen sample`` (``SamplerSpec.from_options``), so the page builds exactly the samplers
the command line builds; the self-guidance scale is the scale of a ``self`` guidance
(Hur et al. 2024, Eq. 6), the CFG scale s of weak + (1 + s)(strong - weak) (ibid. Eq. 5).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import MaskgenError
from ..sampling.registry import FILLS
from ..sampling.spec import ConfidenceSpec, SamplerSpec, preset_names
from ..validate import integer, number

MAX_STEPS = 256  # an interactive run; the loop itself has no limit
MAX_PIXELS = 4096 * 4096  # an upload larger than this is refused before decoding
PRESET = "preset:"  # a sampler menu entry naming a preset
SAMPLER_FIELDS = ("class", "sampler", "steps", "seed", "choice_temperature", "temperature", "cfg", "self_guidance")
# a page field -> sampler options that use it with a non-default value: a fill rule offers
# the field when the model builds that sampler (the spec refuses an option a piece lacks)
PROBES = {
    "choice_temperature": {"choice_temperature": 0.5},
    "temperature": {"temperature": 0.5},
    "cfg": {"cfg": 1.0},
    "self_guidance": {"guidance": "self", "scale": 1.0},
}


def fill_rules() -> list[str]:
    """The fill rules of the registry in the app's menu order (``menu``); each is offered where it builds on the model."""
    return [cls.kind for cls in FILLS.by("menu")]


@dataclass
class ModelInfo:
    """What the page offers for one model: its classes and the samplers it can run."""

    class_names: list[str]
    samplers: dict[str, list[str]]  # fill rule -> the page fields (PROBES) it takes on this model
    image_shape: tuple[int, int, int]  # C, H, W
    grid: tuple[int, int]
    continuous: bool

    @classmethod
    def of(cls, mg) -> "ModelInfo":
        g = mg.generator.config
        names = mg.class_names
        names = [str(n) for n in names] if isinstance(names, list) and len(names) == g.num_classes else [str(c) for c in range(g.num_classes)]
        samplers = {rule: [f for f, o in PROBES.items() if _runs(mg, sampler=rule, **o)] for rule in fill_rules() if _runs(mg, sampler=rule)}
        # the authors' codebases' samplers (docs/presets.md) that build on this model, as "preset:NAME"
        for name in preset_names():
            if _runs(mg, preset=name):
                samplers[f"{PRESET}{name}"] = [f for f, o in PROBES.items() if _runs(mg, preset=name, **o)]
        if not samplers:
            raise MaskgenError(f"the app can run none of the fill rules {', '.join(fill_rules())} on this model")
        grid = tuple(mg.denoiser().grid)
        blank = torch.zeros(1, grid[0] * grid[1], g.token_dim) if mg.continuous else torch.zeros(1, *grid, dtype=torch.long)
        with torch.no_grad():
            shape = tuple(mg.tokenizer.decode(blank.to(mg.device)).shape[1:])
        return cls(names, samplers, shape, grid, mg.continuous)

    def to_dict(self) -> dict[str, Any]:
        c, h, w = self.image_shape
        defaults = SamplerSpec()
        return {
            "classes": self.class_names, "samplers": list(self.samplers), "fields": self.samplers,
            "channels": c, "height": h, "width": w, "grid": list(self.grid), "continuous": self.continuous,
            "max_steps": MAX_STEPS, "defaults": {"steps": defaults.steps, "choice_temperature": ConfidenceSpec().choice_temperature, "temperature": defaults.draw.temperature},
        }


def _runs(mg, **options: Any) -> bool:
    """Whether ``mg`` can build the sampler of ``options`` (a critic rule needs MODEL/critic,
    self-guidance MODEL/self-guidance; a continuous model refuses the confidence rule and
    the token temperature, the critic rule sets its own token temperature)."""
    try:
        mg.sampler(**options)
    except MaskgenError:
        return False
    return True


@dataclass
class SampleRequest:
    label: int
    spec: SamplerSpec
    seed: int


def _given(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    return None if value == "" else value


def sample_request(body: Any, info: ModelInfo, extra: tuple[str, ...] = ()) -> SampleRequest:
    """Check a generate (or, with ``extra`` fields, inpaint) request and build its sampler spec."""
    if not isinstance(body, dict):
        raise MaskgenError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(SAMPLER_FIELDS) - set(extra))
    if unknown:
        names = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise MaskgenError(f"unknown field(s) {names}; the app takes {', '.join(SAMPLER_FIELDS + extra)}")
    label = integer("class", _given(body, "class"), 0)
    if label >= len(info.class_names):
        raise MaskgenError(f"class {label} is out of range: this model has classes 0..{len(info.class_names) - 1}")
    rule = _given(body, "sampler") or next(iter(info.samplers))
    if rule not in info.samplers:
        raise MaskgenError(f"unknown sampler {rule!r} for this model; choose from {', '.join(info.samplers)}")
    steps = integer("steps", _given(body, "steps") if _given(body, "steps") is not None else SamplerSpec().steps, 1)
    if steps > MAX_STEPS:
        raise MaskgenError(f"steps must be at most {MAX_STEPS} in the app, got {steps}")
    seed = integer("seed", _given(body, "seed") if _given(body, "seed") is not None else 0, 0)
    options: dict[str, Any] = {"preset": rule[len(PRESET):]} if rule.startswith(PRESET) else {"sampler": rule}
    options["steps"] = steps
    values = {key: _given(body, key) for key in PROBES}
    for key in ("choice_temperature", "temperature"):
        if values[key] is not None:
            values[key] = number(key.replace("_", " "), values[key], 0.0)
    for key, name in (("cfg", "CFG scale"), ("self_guidance", "self-guidance scale")):
        # a scale of 0 is the conditional prediction itself (weak + 1 * (strong - weak)):
        # leaving the guidance out gives the same images without the extra forward pass
        if values[key] is not None and number(name, values[key]) == 0:
            values[key] = None
    for key, value in values.items():
        if value is not None and key not in info.samplers[rule]:
            where = "" if key != "self_guidance" else " (it needs a self-guidance module, MODEL/self-guidance)"
            raise MaskgenError(f"the {rule} sampler takes no {key.replace('_', ' ')} on this model{where}; leave it out")
    options.update({k: v for k, v in values.items() if k in ("choice_temperature", "temperature", "cfg") and v is not None})
    if values["self_guidance"] is not None:
        options.update(guidance="self", scale=float(values["self_guidance"]))
    return SampleRequest(label, SamplerSpec.from_options(**options), seed)


def _decode_upload(text: Any, what: str) -> Image.Image:
    """A base64 string or ``data:`` URL -> a loaded Pillow image (its first frame)."""
    if not isinstance(text, str) or not text:
        raise MaskgenError(f"the {what} must be a base64 PNG (or a data: URL), got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, IndexError, ValueError):
        raise MaskgenError(f"the {what} is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > MAX_PIXELS:
            raise MaskgenError(f"the {what} is {image.width}x{image.height}: at most {MAX_PIXELS} pixels")
        image.load()
    except MaskgenError:
        raise
    except Exception:  # noqa: BLE001 - a broken file raises anything from a Pillow plugin (SyntaxError, struct.error ...)
        raise MaskgenError(f"the {what} is not an image file Pillow can read (PNG, JPEG, GIF, BMP, WebP)") from None
    return image


def convert(image: Image.Image, mode: str, what: str = "image") -> Image.Image:
    """``image`` in Pillow mode ``mode`` (L, RGB or RGBA), from any mode it may be in, or one
    line saying why not. 16-bit grey (I;16*) is scaled to 8 bits; 32-bit integer (I) and
    float (F) pixels have no fixed range, so they are taken as they are when all lie in
    0..255 and refused otherwise. LAB, CMYK, YCbCr, HSV, premultiplied alpha (La, RGBa) and
    palettes go through RGBA, RGB or LA where Pillow has no direct conversion."""
    if image.mode.startswith("I;16"):
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).round().astype(np.uint8))
    elif image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
            raise MaskgenError(f"the {what} has {'32-bit integer' if image.mode == 'I' else 'floating-point'} pixels outside 0..255 (Pillow mode {image.mode}); save it as 8-bit")
        image = Image.fromarray(values.round().astype(np.uint8))
    for route in ((mode,), ("RGBA", mode), ("RGB", mode), ("LA", mode)):
        try:
            out = image
            for step in route:
                out = out if out.mode == step else out.convert(step)
            return out
        except (ValueError, OSError):
            continue
    raise MaskgenError(f"the {what} is in Pillow mode {image.mode}, which the app cannot turn into {mode}; save it as RGB or greyscale")


def read_image(text: Any, shape: tuple[int, int, int]) -> Tensor:
    """An uploaded image as the model's input: uint8 [1, C, H, W], converted to the model's
    channels (grey or RGB) from any image mode (``convert``) and resized to its size when it differs."""
    c, h, w = shape
    image = convert(_decode_upload(text, "image"), "L" if c == 1 else "RGB")
    if image.size != (w, h):
        image = image.resize((w, h), Image.BICUBIC)
    array = np.asarray(image, dtype=np.uint8).reshape(h, w, c)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None]


def read_mask(text: Any, size: tuple[int, int]) -> Tensor:
    """A painted mask (white, or opaque over transparency, where to sample) as bool [H, W]
    at the model's size: a model pixel is sampled when any mask pixel over it is painted."""
    image = convert(_decode_upload(text, "mask"), "RGBA", "mask")
    black = Image.new("RGBA", image.size, (0, 0, 0, 255))
    painted = np.asarray(Image.alpha_composite(black, image).convert("L")) >= 128
    h, w = size
    pooled = np.asarray(Image.fromarray(painted.astype(np.uint8) * 255).resize((w, h), Image.BOX))
    mask = torch.from_numpy(pooled > 0)
    if not mask.any():
        raise MaskgenError("the mask is empty: paint over the part of the image to redraw")
    return mask
