"""The sampling loop, its contract with a model, the spec that describes a sampler, the registry
of its pieces, and the pieces: fill rules (``fills/``), guidances (``guidances/``), token draws."""

from . import continuous, joint  # noqa: F401 - they register the loop's view of their generators
from .denoiser import Denoiser, DiscreteDenoiser
from .draw import TokenDraw
from .fill import FillRule, Proposal, Step
from .fills.ancestral import AncestralFill
from .fills.confidence import ConfidenceFill
from .fills.flow import FlowEulerFill
from .guidance import Guidance, GuidanceScale, combine
from .guidances.cfg import ClassifierFreeGuidance
from .loop import SampleResult, Sampler
from .registry import FILLS, GUIDANCES
from .spec import (
    AncestralSpec,
    BlurSpec,
    CFGSpec,
    ConfidenceSpec,
    CriticSpec,
    FlowSpec,
    HaltonSpec,
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
    "HaltonSpec",
    "FlowSpec",
    "CriticSpec",
    "OneStepSpec",
    "CFGSpec",
    "BlurSpec",
    "SAGSpec",
    "SelfSpec",
]
