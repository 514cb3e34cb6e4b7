from .classifier import ClassifierConfig, ImageClassifier
from .transformer import GeneratorConfig, MaskedTransformer

__all__ = ["GeneratorConfig", "MaskedTransformer", "ClassifierConfig", "ImageClassifier"]
