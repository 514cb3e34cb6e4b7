"""Joint image+segmentation modelling (Discrete Interpolants, Hu & Ommer 2025, Sec. 3.4-3.5):
the mosaic data, the segmentation tokenizer, the joint objective's masking, sampling with a
given modality, mIoU, and the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskgen.cli import main
from maskgen.data import ImageDataset
from maskgen.data.segmentation import make_mosaics
from maskgen.metrics.segmentation import segmentation_scores
from maskgen.models.joint import JointConfig, JointTransformer
from maskgen.sampling.joint import JointDenoiser
from maskgen.tokenizers.segmentation import SegmentationTokenizer, SegmentationTokenizerConfig
from maskgen.training.context import StepContext
from maskgen.training.joint import JointObjective, JointObjectiveConfig

K_IMG, K_SEG = 6, 3  # a tiny joint vocabulary: image codes 0..5, labels 6..8, mask id 9


def tiny_joint(timestep_input: bool = False) -> JointTransformer:
    torch.manual_seed(0)
    cfg = JointConfig(codebook_size=K_IMG + K_SEG, grid=(4, 2), num_classes=1, width=16, depth=1, heads=2,
                      timestep_input=timestep_input, image_codes=K_IMG, image_tokens=4)
    return JointTransformer(cfg).eval()


def ctx(batch: int, seed: int = 0) -> StepContext:
    return StepContext(step=0, rng=torch.Generator().manual_seed(seed), rows=slice(0, batch), global_batch=batch)


# -- data ------------------------------------------------------------------------------------

def test_mosaic_is_deterministic_and_the_splits_differ():
    a, b = make_mosaics(12), make_mosaics(12)
    assert torch.equal(a.images, b.images) and torch.equal(a.maps, b.maps)
    test = make_mosaics(12, "test")
    assert not torch.equal(a.images, test.images)
    assert a.images.shape == (12, 1, 32, 32) and a.num_labels == 11


def test_mosaic_labels_each_item_pixel_with_its_class_plus_one(monkeypatch):
    # a source where every item of class c is a flat square of grey 50 + 20c: then a mosaic
    # pixel of grey v belongs to an item of class (v - 50) / 20, whose label must be that + 1
    labels = torch.arange(40) % 10
    images = torch.zeros(40, 1, 32, 32, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        images[i, 0, 2:30, 2:30] = 50 + 20 * c
    source = ImageDataset(images, labels, [f"c{i}" for i in range(10)])
    monkeypatch.setattr("maskgen.data.embedded.load_embedded", lambda *a, **k: source)
    m = make_mosaics(30)
    v, lab = m.images[:, 0].long(), m.maps
    assert torch.equal(lab == 0, v == 0)  # background exactly where no item is
    item = v > 0
    assert torch.equal(lab[item], (v[item] - 50) // 20 + 1)
    assert ((lab > 0).flatten(1).sum(1) > 0).all()


def test_image_and_label_folders_pair_by_name(tmp_path):
    from maskgen.data.segmentation import open_segmentation

    (tmp_path / "img").mkdir(), (tmp_path / "lab").mkdir()
    for name, value in (("a", 2), ("b", 4)):
        Image.fromarray(np.full((32, 32), 10 * value, dtype=np.uint8), mode="L").save(tmp_path / "img" / f"{name}.png")
        Image.fromarray(np.full((32, 32), value, dtype=np.uint8), mode="L").save(tmp_path / "lab" / f"{name}.png")
    pairs = open_segmentation(f"images:{tmp_path / 'img'},labels:{tmp_path / 'lab'}", 32, 1)
    assert pairs.num_labels == 5 and pairs.maps[1].unique().tolist() == [4] and pairs.images[1].unique().tolist() == [40]


# -- segmentation tokenizer -------------------------------------------------------------------

def test_segmentation_tokenizer_round_trip_and_majority(tmp_path):
    tok = SegmentationTokenizer(SegmentationTokenizerConfig(num_labels=11, image_size=32, patch=4))
    grid = torch.randint(11, (3, 8, 8), generator=torch.Generator().manual_seed(1))
    aligned = grid.repeat_interleave(4, 1).repeat_interleave(4, 2)  # constant on every 4x4 patch
    assert torch.equal(tok.encode(aligned), grid)
    assert torch.equal(tok.decode(tok.encode(aligned)), aligned)
    # one patch with 9 pixels of label 3 and 7 of label 5: the majority is 3
    m = torch.zeros(1, 32, 32, dtype=torch.long)
    patch = torch.tensor([3] * 9 + [5] * 7).view(4, 4)
    m[0, :4, :4] = patch
    assert tok.encode(m)[0, 0, 0] == 3
    tok.save(tmp_path)
    again = SegmentationTokenizer.load(tmp_path)
    assert again.config == tok.config and torch.equal(again.palette, tok.palette)


# -- joint model and objective ----------------------------------------------------------------

def test_each_position_predicts_only_its_modalitys_vocabulary():
    model = tiny_joint()
    x = torch.full((5, 8), model.config.mask_id)
    probs = model(x, torch.zeros(5, dtype=torch.long)).softmax(-1)
    assert probs[:, :4, K_IMG:].max() < 1e-30 and probs[:, 4:, :K_IMG].max() < 1e-30


def test_explicit_time_is_per_modality_from_the_tokens():
    model = tiny_joint(timestep_input=True)
    given_image = model.join(torch.tensor([[0, 1, 2, 3]]), None, 1)  # image whole, segmentation all masked
    t = model.token_times(given_image)
    assert torch.allclose(t[0, :4], torch.zeros(4), atol=1e-6) and torch.allclose(t[0, 4:], torch.ones(4))


def test_training_step_runs_and_a_kept_modality_is_never_masked():
    model = tiny_joint(timestep_input=True).train()
    config = JointObjectiveConfig(independent_times=True, modality_given=1.0, cond_drop=0.0)
    objective = JointObjective(config, model.config.slices(), model.config.mask_id, True)
    times, mask = objective.corrupt_joint(8, ctx(64))
    whole = torch.stack([~mask[:, :4].any(1), ~mask[:, 4:].any(1)], 1)
    assert torch.equal(whole.sum(1), torch.ones(64, dtype=torch.long))  # exactly one modality kept per row
    assert (times[:, :4][whole[:, 0]] == 0).all() and (times[:, 4:][whole[:, 1]] == 0).all()
    z0 = torch.cat([torch.randint(K_IMG, (64, 4)), K_IMG + torch.randint(K_SEG, (64, 4))], 1)
    loss, metrics = objective(model, (z0, torch.zeros(64, dtype=torch.long)), ctx(64))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_condition_dropout_masks_a_whole_modality():
    model = tiny_joint()
    objective = JointObjective(JointObjectiveConfig(cond_drop=1.0, modality_given=0.0), model.config.slices(), model.config.mask_id, False)
    times, mask = objective.corrupt_joint(8, ctx(16))
    assert mask.all() and (times == 1).all()


# -- sampling ---------------------------------------------------------------------------------

def test_cfg_weak_branch_masks_the_given_modality_only():
    den = JointDenoiser(tiny_joint())
    m = den.mask_id
    x = torch.tensor([[0, 1, 2, 3, m, 7, m, 8], [0, 1, 2, 3, m, 7, m, 8]])
    weak, labels = den.condition(x, torch.tensor([0, den.null_class]))
    assert torch.equal(weak[0], x[0])  # the strong row is untouched
    assert torch.equal(weak[1], torch.tensor([m, m, m, m, m, 7, m, 8]))  # the complete image is dropped
    assert torch.equal(labels, torch.zeros(2, dtype=torch.long))


def test_a_given_modality_is_never_changed_in_sampling():
    from maskgen.sampling.spec import SamplerSpec

    class Source:
        def denoiser(self):
            return JointDenoiser(tiny_joint(timestep_input=True))

    sampler = SamplerSpec.from_options(steps=3, cfg=2.0).build(Source())
    model = sampler.model.network
    seg = torch.randint(K_SEG, (6, 4), generator=torch.Generator().manual_seed(3))
    given = model.join(None, seg, 6)
    res = sampler(torch.zeros(6, dtype=torch.long), torch.Generator().manual_seed(0), given=given)
    image, labels = model.split(res.tokens)
    assert torch.equal(labels, seg)
    assert (image >= 0).all() and (image < K_IMG).all()


# -- metrics ----------------------------------------------------------------------------------

def test_miou_and_pixel_accuracy_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 2]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 2, 2]])
    # label 0: TP 3, FP 0, FN 1 -> 3/4; label 1: TP 2, FP 1, FN 1 -> 2/4; label 2: TP 1, FP 1, FN 0 -> 1/2
    # label 3 occurs nowhere and is left out; pixel accuracy 6/8
    s = segmentation_scores(pred, target, 4)
    assert s["iou"] == [0.75, 0.5, 0.5, None]
    assert s["miou"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert s["pixel_accuracy"] == pytest.approx(0.75)


# -- CLI --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def joint_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    argv = ["train", "--modalities", "image,segmentation", "--data", "mosaic:32", "--tokenizer", "src/maskgen/reference",
            "--out", str(root / "j"), "--steps", "2", "--batch-size", "8", "--width", "16", "--depth", "1", "--heads", "2",
            "--timestep-input", "--independent-times", "--device", "cpu"]
    assert main(argv) == 0
    return root / "j"


def test_cli_given_round_trip(joint_dir, tmp_path):
    common = ["--model", str(joint_dir), "--steps", "2", "--device", "cpu"]
    assert main(["sample", *common, "--num", "4", "--out", str(tmp_path / "joint")]) == 0
    seg_dir = tmp_path / "joint" / "segmentation"
    assert main(["sample", *common, "--given", f"segmentation:{seg_dir}", "--cfg", "1", "--out", str(tmp_path / "s2i")]) == 0
    assert main(["sample", *common, "--given", f"image:{tmp_path / 's2i' / 'image'}", "--out", str(tmp_path / "i2s")]) == 0
    assert main(["sample", "--spec", str(tmp_path / "s2i" / "samples.json"), "--device", "cpu", "--out", str(tmp_path / "again")]) == 0
    first, s2i, i2s, again = (np.load(tmp_path / d / "samples.npz") for d in ("joint", "s2i", "i2s", "again"))
    assert all(np.array_equal(s2i[k], again[k]) for k in s2i.files)  # samples.json replays model, given modality and sampler
    assert np.array_equal(s2i["maps"], first["maps"])  # the given segmentation came back unchanged
    assert np.array_equal(np.asarray(Image.open(seg_dir / "000001.png")), first["maps"][1])  # PNG holds the labels
    from maskgen.data.segmentation import read_image_folder
    from maskgen.pipelines import JointGen

    model = JointGen.load(joint_dir)
    pictures = read_image_folder(tmp_path / "s2i" / "image", 32, 1)[1]
    assert np.array_equal(i2s["tokens"][:, :64], model.given_state(4, images=pictures)[:, :64].numpy())  # the given image's codes kept


def test_cli_eval_reports_miou(joint_dir, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", str(joint_dir), "--given", "image:mosaic-test:4", "--steps", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert "miou" in out.read_text() and "pixel_accuracy" in capsys.readouterr().out


def test_cli_eval_names_metrics_as_eval_does_and_never_overwrites(joint_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--model", str(joint_dir), "--given", "segmentation:mosaic-test:4", "--steps", "1", "--device", "cpu"]
    assert main(argv) == 0  # no --out: ./eval.json, as eval --model writes
    first = (tmp_path / "eval.json").read_bytes()
    record = json.loads(first)
    assert record["metrics"]["task"] == "segmentation->image" and "fd_clf" in record["metrics"] and "fd" not in record["metrics"]
    assert record["metrics"]["count"] == 4 and record["model"] == str(joint_dir.resolve())
    capsys.readouterr()
    assert main(argv) == 2  # a second eval is refused, not written over the first
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "eval.json already exists" in err and "--overwrite" in err
    assert (tmp_path / "eval.json").read_bytes() == first
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize("argv_tail, phrase", [
    (["train", "--modalities", "image,depth", "--data", "mosaic:8", "--tokenizer", "src/maskgen/reference"], "unknown modality 'depth'"),
    (["sample", "--given", "depth:x"], "unknown modality 'depth'"),
    (["sample", "--given", "segmentation:/no/such/labels"], "label folder does not exist"),
    (["sample", "--given", "segmentation:BAD"], "label value 50 out of range"),
])
def test_bad_input_is_one_line(argv_tail, phrase, joint_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.full((32, 32), 50, dtype=np.uint8), mode="L").save(bad / "a.png")
    argv = [a.replace("BAD", str(bad)) for a in argv_tail]
    if argv[0] == "sample":
        argv += ["--model", str(joint_dir), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and len(err.splitlines()) == 1
