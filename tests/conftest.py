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


TOK = ["--steps", "3", "--batch-size", "16", "--width", "8", "--codebook-size", "16", "--code-dim", "8", "--log-every", "1"]
GEN = ["--steps", "3", "--batch-size", "16", "--width", "32", "--depth", "1", "--heads", "2", "--log-every", "1"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tokenizer and a generator trained for a few steps through the CLI: <root>/tok, <root>/gen."""
    from maskgen.cli import main

    root = tmp_path_factory.mktemp("cli")
    assert main(["train-tokenizer", "--data", "embedded", "--out", str(root / "tok"), *TOK]) == 0
    assert main(["train", "--data", "embedded", "--tokenizer", str(root / "tok"), "--out", str(root / "gen"), *GEN]) == 0
    return root / "gen"


class BareGenerator:
    """What ``SamplerSpec.build`` needs from a model folder, for a bare generator."""

    def __init__(self, network, critic=None, module=None):
        self.network, self._critic, self._module = network, critic, module

    def denoiser(self):
        from maskgen.sampling.denoiser import DiscreteDenoiser

        return DiscreteDenoiser(self.network)

    def critic(self, folder=None):
        assert self._critic is not None, "this test gave no critic"
        return self._critic

    def self_guidance_module(self, folder=None):
        assert self._module is not None, "this test gave no self-guidance module"
        return self._module


def build_sampler(network, critic=None, module=None, **options):
    """The sampler ``maskgen sample``'s options describe, on a bare generator."""
    from maskgen.sampling.spec import SamplerSpec

    return SamplerSpec.from_options(**options).build(BareGenerator(network, critic, module))
