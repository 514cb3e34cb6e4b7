"""The sampling loop and its pieces: fill rules, token draws, guidance."""

from .draw import TokenDraw
from .fill import AncestralFill, ConfidenceFill, FillRule, FlowEulerFill, Step, make_fill
from .guidance import ClassifierFreeGuidance, Guidance, GuidanceScale, combine
from .loop import SampleResult, Sampler

__all__ = [
    "TokenDraw",
    "FillRule",
    "ConfidenceFill",
    "AncestralFill",
    "FlowEulerFill",
    "Step",
    "make_fill",
    "Guidance",
    "ClassifierFreeGuidance",
    "GuidanceScale",
    "combine",
    "Sampler",
    "SampleResult",
]
