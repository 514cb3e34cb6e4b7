"""Inpainting (``maskgen inpaint``, ``inpainting.inpaint``) and conditional coupling in training
(Discrete Interpolants, Hu & Ommer 2025, Sec. 3.6 Eq. 8)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from maskgen.cli import main
from maskgen.data.images import load_image
from maskgen.data.embedded import load_embedded
from maskgen.pipelines.inpainting import inpaint
from maskgen.pipelines import MaskGen, reference_dir
from maskgen.training.context import StepContext
from maskgen.training.masking import MaskedObjectiveConfig, MaskedTokenObjective

# The reference model: 32x32 images, 8x8 tokens of 4x4 pixels, 10 classes.
# Pixel box rows 9..13, cols 13..21 touches token rows 2..3 (pixels 8..15) and token
# cols 3..5 (pixels 12..23): M = 2 * 3 = 6 tokens.
BOX = (slice(9, 14), slice(13, 22))
BOX_TOKENS = [(r, c) for r in (2, 3) for c in (3, 4, 5)]


@pytest.fixture(scope="module")
def mg():
    return MaskGen.load(reference_dir())


@pytest.fixture(scope="module")
def items():
    data = load_embedded()
    return torch.stack([data[i][0] for i in (0, 1, 2)]), torch.tensor([int(data[i][1]) for i in (0, 1, 2)])


def box_mask(box=BOX) -> torch.Tensor:
    m = torch.zeros(32, 32, dtype=torch.bool)
    m[box] = True
    return m


def region_by_hand(cells) -> torch.Tensor:
    r = torch.zeros(64, dtype=torch.bool)
    for row, col in cells:
        r[row * 8 + col] = True
    return r


SAMPLERS = {
    "confidence": {"sampler": "confidence"},
    "critic": {"sampler": "critic"},
    "flow": {"sampler": "flow"},
    "ancestral": {"sampler": "ancestral"},
    "halton": {"sampler": "halton"},
    "self-guidance": {"guidance": "self", "scale": 1.0},
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_only_the_region_changes(mg, items, name):
    images, labels = items
    sampler = mg.sampler(steps=4, **SAMPLERS[name])
    out, result = inpaint(mg, images, box_mask(), labels, sampler, seed=1)
    region = region_by_hand(BOX_TOKENS)
    assert result.settings["region_tokens"] == [6, 6, 6]
    before = mg.tokenizer.encode(images).reshape(3, -1)
    assert torch.equal(result.tokens[:, ~region], before[:, ~region])
    assert not (result.tokens[:, region] == mg.denoiser().mask_id).any()  # the region is complete
    outside = ~box_mask()
    assert torch.equal(out[:, :, outside], images[:, :, outside])
    assert (out[:, :, box_mask()] != images[:, :, box_mask()]).any()  # the model did paint inside


@pytest.mark.parametrize("rule", ["ancestral", "halton"])
def test_continuous_model_keeps_latents_outside(items, rule):
    mg = MaskGen.load(reference_dir() / "emigm")
    images, labels = items
    out, result = inpaint(mg, images[:2], box_mask(), labels[:2], mg.sampler(sampler=rule, steps=3), seed=0)
    region = region_by_hand(BOX_TOKENS)
    before = mg.tokenizer.encode(images[:2])
    assert torch.equal(result.tokens[:, ~region], before[:, ~region])
    assert torch.isfinite(result.tokens).all()
    assert torch.equal(out[:, :, ~box_mask()], images[:2, :, ~box_mask()])


def test_confidence_counts_run_over_the_region(mg, items):
    # token rows 1..6 x cols 1..6 (pixels 4..27): M = 36; T = 8 cosine steps, gamma(s) =
    # cos(pi/2 (1 - s)) with s = (T - i - 1) / T after step i: floor(36 gamma(s)) stay masked
    images, labels = items
    m = box_mask((slice(4, 28), slice(4, 28)))
    counts = []
    mask_id = mg.denoiser().mask_id
    sampler = mg.sampler(sampler="confidence", steps=8, schedule="cosine")
    inpaint(mg, images, m, labels, sampler, seed=0, on_step=lambda i, x: counts.append((x == mask_id).sum(1).tolist()))
    expected = [math.floor(36 * math.cos(math.pi / 2 * (i + 1) / 8)) for i in range(8)]
    assert expected == [35, 33, 29, 25, 20, 13, 7, 0]  # by hand: 36 x 0.981, 0.924, 0.831, 0.707, 0.556, 0.383, 0.195, 0
    assert counts == [[e] * 3 for e in expected]


def write_inputs(tmp_path, items):
    img = items[0][0, 0].numpy()
    Image.fromarray(img).resize((64, 64), Image.NEAREST).save(tmp_path / "in.png")
    mask = np.zeros((96, 96), np.uint8)  # another size than the image: resized with nearest
    mask[27:42, 39:66] = 255  # = pixels 9..13 x 13..21 at 32x32
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path / "in.png", tmp_path / "mask.png"


def test_cli_writes_grid_samples_and_settings(tmp_path, items):
    image, mask = write_inputs(tmp_path, items)
    out = tmp_path / "out"
    argv = ["inpaint", "--image", str(image), "--mask", str(mask), "--out", str(out), "--num", "3", "--steps", "4", "--seed", "5", "--class", "2"]
    assert main(argv) == 0
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (3 * (32 + 4), 3 * (5 * 34 + 2))  # one row: input | mask | 3 samples, 3x
    record = json.loads((out / "inpaint.json").read_text())
    assert record["seed"] == 5 and record["class"] == 2 and record["nfe"] == 4 and record["region_tokens"] == 6
    assert record["sampler"]["steps"] == 4 and record["sampler"]["fill"]["kind"] == "confidence"
    # masked after each step over the region M = 6, cosine: floor(6 cos(pi/2 (i+1)/4)) = 5, 4, 2, then 0
    assert record["masked_per_step"] == [5, 4, 2, 0]
    given = load_image(image, 32, 1)[0].numpy()  # the input as the data loader brings it to the model's size
    for i in range(3):
        sample = np.asarray(Image.open(out / f"sample-{i:02d}.png"))
        outside = ~box_mask().numpy()
        assert np.array_equal(sample[outside], given[outside])
    assert not (out / "sample-03.png").exists()


def test_cli_takes_classes_like_sample_and_class_as_its_alias(tmp_path, items):
    image, mask = write_inputs(tmp_path, items)
    base = ["inpaint", "--image", str(image), "--mask", str(mask), "--num", "3", "--steps", "2"]
    assert main([*base, "--classes", "1,4", "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "inpaint.json").read_text())
    assert record["classes"] == [1, 4, 1] and record["class"] is None and record["unconditional"] is False
    assert main([*base, "--class", "7", "--out", str(tmp_path / "b")]) == 0
    assert main([*base, "--classes", "7", "--out", str(tmp_path / "c")]) == 0
    b, c = (json.loads((tmp_path / x / "inpaint.json").read_text()) for x in "bc")
    assert b["classes"] == c["classes"] == [7, 7, 7] and b["class"] == 7
    assert (tmp_path / "b" / "grid.png").read_bytes() == (tmp_path / "c" / "grid.png").read_bytes()


def test_cli_without_class_is_unconditional(tmp_path, items):
    image, mask = write_inputs(tmp_path, items)
    assert main(["inpaint", "--image", str(image), "--mask", str(mask), "--out", str(tmp_path / "o"), "--num", "1", "--steps", "2"]) == 0
    record = json.loads((tmp_path / "o" / "inpaint.json").read_text())
    assert record["unconditional"] is True and record["settings"]["inpainted"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--image": "missing.png"}, "--image file does not exist"),
        ({"--mask": "missing.png"}, "--mask file does not exist"),
        ({"--mask": "black.png"}, "has no white pixels"),
        ({"--image": "text.png"}, "cannot decode image"),
        ({"--class": "10"}, "--classes: class id 10 out of range"),
        ({"--classes": "1,x"}, "--classes"),
        ({"--num": "0"}, "--num must be"),
        ({"--acceptance": "0.5"}, "inpaint does not do classifier rejection"),
        ({"--sampler": "nope"}, "nope"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, items, capsys, change, message):
    image, mask = write_inputs(tmp_path, items)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "black.png")
    (tmp_path / "text.png").write_text("not a picture")
    opts = {"--image": str(image), "--mask": str(mask), "--out": str(tmp_path / "o"), "--num": "1", "--steps": "2"}
    opts.update({k: (str(tmp_path / v) if v.endswith(".png") else v) for k, v in change.items()})
    assert main(["inpaint", *[x for kv in opts.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


# --- conditional coupling (Discrete Interpolants Eq. 8) in the masked objective -----------


class Recorder(torch.nn.Module):
    """Fixed learnable logits; records the input the objective fed it."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, tokens, labels, t=None):
        self.inputs = tokens
        g = torch.Generator().manual_seed(7)
        self.logits = torch.randn(*tokens.shape, self.k, generator=g).requires_grad_(True)
        return self.logits


def draws(seed, b, n, coupling):
    """The objective's draws for one step, in the order it makes them: t, the mask scores,
    the condition dropout, then (with coupling) the kept ratio and the kept positions' scores."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(b, generator=g, dtype=torch.float64)
    scores = torch.rand(b, n, generator=g)
    torch.rand(b, generator=g)
    if not coupling:
        return t, scores, torch.zeros(b, n, dtype=torch.bool)
    r = torch.rand(b, generator=g, dtype=torch.float64) * coupling
    kept_scores = torch.rand(b, n, generator=g)
    kept = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        kept[i, kept_scores[i].argsort()[: int(math.floor(r[i].item() * n))]] = True
    return t, scores, kept


def coupled_loss(masking, coupling, seed=3, b=16, n=20, k=8):
    obj = MaskedTokenObjective(MaskedObjectiveConfig(schedule="linear", masking=masking, cond_drop=0.0, coupling=coupling), mask_id=k, null_class=3)
    tokens = torch.randint(0, k, (b, n), generator=torch.Generator().manual_seed(0))
    rec = Recorder(k)
    ctx = StepContext(step=0, rng=torch.Generator().manual_seed(seed), rows=slice(0, b), global_batch=b)
    loss, _ = obj(rec, (tokens, torch.zeros(b, dtype=torch.long)), ctx)
    return loss, rec, tokens


@pytest.mark.parametrize("masking", ["count", "bernoulli"])
def test_coupled_positions_are_never_masked_and_carry_no_loss(masking):
    b, n, k = 16, 20, 8
    loss, rec, tokens = coupled_loss(masking, 0.75)
    t, scores, kept = draws(3, b, n, 0.75)
    assert kept.sum() > 0
    masked = rec.inputs == k
    assert not (masked & kept).any()
    assert torch.equal(rec.inputs[kept], tokens[kept])
    free = ~kept
    if masking == "count":  # linear gamma(t) = t: ceil(N_free t) of the free positions, the lowest scores
        for i in range(b):
            m = max(1, math.ceil(free[i].sum().item() * t[i].item()))
            order = torch.where(kept[i], 2.0, scores[i]).argsort()[:m]
            assert set(torch.nonzero(masked[i]).flatten().tolist()) == set(order.tolist())
    else:
        assert torch.equal(masked, (scores < t[:, None].float()) & free)
    ce = -torch.log_softmax(rec.logits.detach(), -1).gather(-1, tokens[..., None])[..., 0]
    assert loss.item() == pytest.approx((ce * masked).sum(1).div(n).mean().item(), rel=1e-5)  # w(t) = 1: sum / N
    loss.backward()
    grad = rec.logits.grad.abs().sum(-1)
    assert (grad[kept] == 0).all() and (grad[masked] > 0).all()


def test_coupling_reaches_the_continuous_objective():
    from maskgen.training.continuous import MaskedLatentObjective

    b, n, seen = 16, 20, {}

    def head_loss(latents, mask, labels, t, generator):  # a diffusion head's loss of 1 per masked token
        seen["mask"] = mask
        return mask.float()

    obj = MaskedLatentObjective(MaskedObjectiveConfig(schedule="linear", masking="count", cond_drop=0.0, coupling=0.75), null_class=3)
    ctx = StepContext(step=0, rng=torch.Generator().manual_seed(3), rows=slice(0, b), global_batch=b)
    loss, _ = obj(head_loss, (torch.randn(b, n, 4), torch.zeros(b, dtype=torch.long)), ctx)
    _, _, kept = draws(3, b, n, 0.75)
    assert kept.any() and not (seen["mask"] & kept).any()
    assert loss.item() == pytest.approx(seen["mask"].sum(1).div(n).mean().item())


def test_without_coupling_the_objective_is_unchanged():
    b, n, k = 16, 20, 8
    loss, rec, tokens = coupled_loss("count", 0.0)
    t, scores, _ = draws(3, b, n, 0.0)
    masked = rec.inputs == k
    for i in range(b):  # ceil(N t) lowest scores, as without the coupling option
        m = max(1, math.ceil(n * t[i].item()))
        assert set(torch.nonzero(masked[i]).flatten().tolist()) == set(scores[i].argsort()[:m].tolist())
    ce = -torch.log_softmax(rec.logits.detach(), -1).gather(-1, tokens[..., None])[..., 0]
    assert loss.item() == pytest.approx((ce * masked).sum(1).div(n).mean().item(), rel=1e-5)


def test_coupling_is_recorded_and_resume_refuses_a_change(model_dir, capsys):
    from conftest import GEN

    assert json.loads((model_dir / "generator.json").read_text())["objective"]["coupling"] == 0.0
    capsys.readouterr()
    tok = str(model_dir.parent / "tok")
    argv = ["train", "--data", "embedded", "--tokenizer", tok, "--out", str(model_dir), *GEN, "--resume", "--coupling", "0.4"]
    assert main(argv) == 2  # refused before any step: the shared run is left as it was
    assert "coupling 0.0 -> 0.4" in capsys.readouterr().err
    with pytest.raises(Exception, match="coupling"):
        MaskedObjectiveConfig(coupling=1.0)
