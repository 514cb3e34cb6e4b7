import pytest
import torch

from maskgen.models.transformer import GeneratorConfig, MaskedTransformer


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def tiny_generator(seed: int = 0, **kw) -> MaskedTransformer:
    torch.manual_seed(seed)
    cfg = dict(codebook_size=16, grid=(4, 4), num_classes=3, width=32, depth=2, heads=2)
    cfg.update(kw)
    return MaskedTransformer(GeneratorConfig(**cfg)).eval()


@pytest.fixture
def generator() -> MaskedTransformer:
    return tiny_generator()
