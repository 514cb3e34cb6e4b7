"""The sampling loop, its contract with a model, the spec that describes a sampler, and the
pieces: fill rules, token draws, guidance."""

from .denoiser import Denoiser, DiscreteDenoiser
from .draw import TokenDraw
from .fill import AncestralFill, ConfidenceFill, FillRule, FlowEulerFill, Proposal, Step
from .guidance import ClassifierFreeGuidance, Guidance, GuidanceScale, combine
from .loop import SampleResult, Sampler
from .spec import (
    FILLS,
    GUIDANCES,
    AncestralSpec,
    BlurSpec,
    CFGSpec,
    ConfidenceSpec,
    CriticSpec,
    FlowSpec,
    OneStepSpec,
    SAGSpec,
    SamplerSpec,
    SelfSpec,
)

__all__ = [
    "Denoiser",
    "DiscreteDenoiser",
    "TokenDraw",
    "FillRule",
    "ConfidenceFill",
    "AncestralFill",
    "FlowEulerFill",
    "Proposal",
    "Step",
    "Guidance",
    "ClassifierFreeGuidance",
    "GuidanceScale",
    "combine",
    "Sampler",
    "SampleResult",
    "SamplerSpec",
    "FILLS",
    "GUIDANCES",
    "ConfidenceSpec",
    "AncestralSpec",
    "FlowSpec",
    "CriticSpec",
    "OneStepSpec",
    "CFGSpec",
    "BlurSpec",
    "SAGSpec",
    "SelfSpec",
]
