"""A model folder as an object: ``load_model(folder)`` returns the pipeline that serves it (a
``MaskGen`` for class-conditional images, a ``JointGen`` for image + segmentation pairs), which
builds samplers from specs and generates; and what is done with one: save samples, inpaint,
export, import a published checkpoint, the demo."""

from ..shipped import REFERENCE, reference_dir
from .base import Pipeline
from .folder import PIPELINES, load_model
from .joint import JointGen
from .maskgen import MaskGen
from .samples import masked_per_step_record, save_joint_samples, save_samples

__all__ = [
    "REFERENCE", "reference_dir", "Pipeline", "PIPELINES", "load_model", "JointGen", "MaskGen",
    "masked_per_step_record", "save_joint_samples", "save_samples",
]
