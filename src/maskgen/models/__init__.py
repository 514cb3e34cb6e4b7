from .transformer import GeneratorConfig, MaskedTransformer

__all__ = ["GeneratorConfig", "MaskedTransformer"]
