"""maskgen: masked generative image models (MaskGIT family) in one codebase.

One training objective (eMIGM, You et al. 2025, Eq. 7) and one sampling loop described by a
``SamplerSpec``; schedules, masking, weighting, fill rules, token draws and guidances are
small pieces that combine freely.
"""

from .errors import MaskgenError
from .models.transformer import GeneratorConfig, MaskedTransformer
from .pipelines import MaskGen, save_samples
from .sampling import (
    AncestralFill,
    ClassifierFreeGuidance,
    ConfidenceFill,
    FlowEulerFill,
    GuidanceScale,
    SampleResult,
    Sampler,
    SamplerSpec,
    TokenDraw,
)
from .schedules import get_schedule, schedule_names
from .tokenizers import VQConfig, VQTokenizer

__version__ = "0.1.0"

__all__ = [
    "MaskgenError",
    "GeneratorConfig",
    "MaskedTransformer",
    "MaskGen",
    "save_samples",
    "Sampler",
    "SampleResult",
    "TokenDraw",
    "ConfidenceFill",
    "AncestralFill",
    "FlowEulerFill",
    "SamplerSpec",
    "ClassifierFreeGuidance",
    "GuidanceScale",
    "get_schedule",
    "schedule_names",
    "VQConfig",
    "VQTokenizer",
]
