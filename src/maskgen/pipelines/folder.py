"""``load_model(folder)``: a model folder as the pipeline that serves it. Its ``generator.json``
is read once, and its ``kind`` picks the pipeline (``PIPELINES``); the loaders read the rest
of the folder (each file once) from there."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_json
from ..errors import MaskgenError
from .base import Pipeline, model_folder
from .joint import JointGen
from .maskgen import MaskGen

PIPELINES: dict[str, type[Pipeline]] = {kind: cls for cls in (MaskGen, JointGen) for kind in cls.kinds}
"""generator kind -> the pipeline that serves it."""

def load_model(folder: str | Path, *, device: str | torch.device = "cpu") -> Pipeline:
    """The model in ``folder``: a ``MaskGen`` (class-conditional images) or a ``JointGen``
    (image + segmentation pairs), whichever its generator is."""
    folder = model_folder(folder)
    record = load_json(folder / "generator.json")
    kind = record.get("kind", MaskGen.kinds[0])
    if kind not in PIPELINES:
        raise MaskgenError(f"{folder}/generator.json holds a {kind}, not one of {', '.join(PIPELINES)}")
    return PIPELINES[kind].from_record(folder, record, device)
