"""The README's Python API, on a tiny model: it must keep working as written."""

import numpy as np
import torch

from conftest import tiny_generator
from maskgen import MaskGen, SamplerSpec, TokenDraw, VQConfig, VQTokenizer, save_samples
from maskgen.sampling import CFGSpec, ConfidenceSpec
from maskgen.tokenizers import copy_tokenizer


def test_readme_api(tmp_path):
    torch.manual_seed(0)
    tok = VQTokenizer(VQConfig(codebook_size=16, code_dim=8, width=8, downsample=8))
    gen = tiny_generator(codebook_size=16, grid=(4, 4), num_classes=10)
    tok.save(tmp_path / "tok")
    gen.save(tmp_path / "gen")
    copy_tokenizer(tmp_path / "tok", tmp_path / "gen")

    model = MaskGen.load(tmp_path / "gen")
    sampler = model.sampler(sampler="confidence", steps=8, cfg=2.0)
    assert sampler.settings()["sampler"]["guidance"][0]["scale"] == 2.0
    spec = SamplerSpec(
        steps=8,
        schedule="cosine",
        fill=ConfidenceSpec(choice_temperature=4.5, annealing="linear"),
        draw=TokenDraw(temperature=1.0, top_p=0.9),
        guidance=[CFGSpec(scale=2.0, ramp="linear")],
    )
    sampler = model.sampler(spec)
    images, result = model.generate(torch.arange(10), sampler, seed=0, progress=False)
    assert images.shape == (10, 1, 32, 32) and images.dtype == torch.uint8
    assert result.nfe == 15  # the linear ramp is 0 at the first step: 1 + 7 * 2
    paths = save_samples(tmp_path / "my-samples", images, result, num_classes=10)
    assert np.array_equal(np.load(paths["npz"])["images"], images.numpy())
    again, _ = model.generate(torch.arange(10), sampler, seed=0, progress=False)
    assert torch.equal(images, again)
    # the spec a result records rebuilds the same sampler
    replayed, _ = model.generate(torch.arange(10), model.sampler(result.settings["sampler"]), seed=0, progress=False)
    assert torch.equal(images, replayed)


def test_an_image_depends_on_its_index_not_on_num_or_batch_size(tmp_path):
    """Issue: the first 50 images of --num 100 differed from --num 50. Each image now draws
    from its own stream (seed, index), for every fill rule and with rejection candidates."""
    torch.manual_seed(0)
    tok = VQTokenizer(VQConfig(codebook_size=16, code_dim=8, width=8, downsample=8))
    gen = tiny_generator(codebook_size=16, grid=(4, 4), num_classes=10)
    tok.save(tmp_path / "m")
    gen.save(tmp_path / "m")
    model = MaskGen.load(tmp_path / "m")
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    for options in ({"sampler": "confidence", "cfg": 1.0}, {"sampler": "ancestral"}, {"sampler": "flow"}):
        sampler = model.sampler(steps=6, **options)
        _, few = model.generate(labels[:3], sampler, seed=7, batch_size=2, progress=False)
        _, many = model.generate(labels, sampler, seed=7, batch_size=4, progress=False)
        _, other = model.generate(labels, sampler, seed=8, batch_size=4, progress=False)
        assert torch.equal(few.tokens, many.tokens[:3]), options
        assert not torch.equal(many.tokens, other.tokens), options
        # a row's stream is its own: two images with one label still differ
        assert not torch.equal(many.tokens[1], many.tokens[3]), options
