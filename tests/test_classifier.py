"""The small classifier behind FD-clf / CS / class accuracy: contract, training, checkpoints."""

import json

import numpy as np
import pytest
import torch

from maskgen.checkpoint import file_sha256
from maskgen.training.classification import class_accuracy, classifier_metrics, heldout_split, recommended_train_config, train_classifier
from maskgen.data import fit_to_size, open_dataset
from maskgen.errors import MaskgenError
from maskgen.metrics.features import extract
from maskgen.models.classifier import ClassifierConfig, ImageClassifier
from maskgen.training.classification import ClassificationObjective, random_shift
from maskgen.training.context import StepContext
from maskgen.training.trainer import TrainConfig

TINY = dict(width=16, feature_dim=32, blocks=1)


def tiny(seed=0, **kw) -> ImageClassifier:
    torch.manual_seed(seed)
    return ImageClassifier(ClassifierConfig(**{**TINY, **kw})).eval()


def ctx(b, step=0, rows=None):
    return StepContext(step=step, rng=torch.Generator().manual_seed(step), rows=rows or slice(0, b), global_batch=b)


def uint8_images(n, size=32, channels=1, seed=0):
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier trained briefly on the embedded data (shared by several tests)."""
    out = tmp_path_factory.mktemp("clf")
    # one thread: these small convolutions gain little from a second one, and lose a lot
    # when other processes share the cores (OpenMP threads then wait on each other)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train = TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup=30, save_every=10**6, log_every=25, seed=1)
    try:
        model, metrics = train_classifier("embedded", out, ClassifierConfig(**TINY), train, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out, model, metrics


def test_feature_network_contract():
    clf = tiny(num_classes=7)
    assert clf.name == "maskgen-classifier" and clf.num_classes == 7 and clf.sha256 is None
    with torch.no_grad():
        for shape in [(5, 1, 32, 32), (5, 1, 28, 28), (5, 3, 32, 32), (5, 1, 64, 64)]:
            feats, logits = clf(uint8_images(shape[0], shape[-1], shape[1]))
            assert feats.shape == (5, 32) and logits.shape == (5, 7)
            assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
        # 28x28 input is zero-padded to 32, exactly as the data package stores it
        small = uint8_images(4, 28)
        assert torch.equal(clf(small)[0], clf(fit_to_size(small, 32))[0])
    feats, logits = extract(clf, uint8_images(30).numpy(), batch_size=8, progress=False)
    assert feats.shape == (30, 32) and logits.shape == (30, 7) and feats.dtype == np.float64
    with pytest.raises(MaskgenError, match="uint8"):
        clf(torch.rand(2, 1, 32, 32))


def test_config_is_checked():
    assert recommended_train_config(steps=7).steps == 7
    with pytest.raises(MaskgenError, match="width"):
        ClassifierConfig(width=12)
    with pytest.raises(MaskgenError, match="unknown keys depth"):
        ClassifierConfig.from_dict({"depth": 3})


def test_random_shift_is_a_translation_drawn_for_the_global_batch():
    images = torch.zeros(6, 1, 12, 12, dtype=torch.uint8)
    images[:, :, 4:8, 4:8] = torch.arange(1, 17, dtype=torch.uint8).view(4, 4)
    shifted = random_shift(images, 2, ctx(6, step=3))
    assert torch.equal(shifted, random_shift(images, 2, ctx(6, step=3)))
    for a, b in zip(images, shifted):  # content moves intact (it stays inside the frame)
        assert torch.equal(a[a > 0], b[b > 0])
    assert len({tuple(torch.nonzero(s[0])[0].tolist()) for s in shifted}) > 1
    # a rank sees its rows of the global draw, so DDP runs augment like one process
    part = random_shift(images[2:4], 2, ctx(6, step=3, rows=slice(2, 4)))
    assert torch.equal(part, shifted[2:4])


def test_objective_loss_and_metrics():
    clf = tiny().train()
    images, labels = uint8_images(8), torch.arange(8) % 10
    loss, metrics = ClassificationObjective(flip=True)(clf, (images, labels), ctx(8))
    assert loss.requires_grad and set(metrics) == {"loss", "acc"}
    assert metrics["loss"] == pytest.approx(loss.item()) and 0.0 <= metrics["acc"] <= 1.0


def test_heldout_split_is_disjoint_balanced_and_fixed():
    labels = torch.arange(200) % 4
    train, held = heldout_split(labels)
    assert len(held) == 20 and set(train.tolist()).isdisjoint(held.tolist())
    assert len(train) + len(held) == 200
    assert torch.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    assert torch.equal(held, heldout_split(labels)[1])


def test_training_beats_chance_on_heldout_images(trained):
    out, model, metrics = trained
    assert metrics["heldout_size"] == 1000 and metrics["steps"] == 300
    assert metrics["accuracy"] > 0.6, metrics  # chance is 0.1
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    # the same number through the public helper, on the held-out images
    data = open_dataset("embedded")
    _, held = heldout_split(data.labels)
    images, labels = data.batch(held)
    assert classifier_metrics(model, images, labels)["class_accuracy"] == pytest.approx(metrics["accuracy"])


def test_save_load_round_trip(trained, tmp_path):
    out, model, _ = trained
    loaded = ImageClassifier.load(out)
    assert not loaded.training and loaded.sha256 == file_sha256(out / "classifier.safetensors")
    images = uint8_images(16)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    loaded.save(tmp_path)
    assert ImageClassifier.load(tmp_path).sha256 == loaded.sha256


def test_load_with_wrong_config_lists_mismatched_keys(tmp_path):
    tiny().save(tmp_path)
    record = json.loads((tmp_path / "classifier.json").read_text())
    record["config"]["feature_dim"] = 48
    (tmp_path / "classifier.json").write_text(json.dumps(record))
    with pytest.raises(MaskgenError, match=r"shape mismatch: .*head\.weight.*proj\.weight"):
        ImageClassifier.load(tmp_path)
    record["config"]["feature_dim"], record["config"]["blocks"] = 32, 2
    (tmp_path / "classifier.json").write_text(json.dumps(record))
    with pytest.raises(MaskgenError, match=r"missing keys: .*body\."):
        ImageClassifier.load(tmp_path)


def test_class_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert class_accuracy(logits, [0, 1, 1]) == pytest.approx(2 / 3)
    assert class_accuracy(logits.numpy(), np.array([0, 1, 0])) == 1.0
    with pytest.raises(MaskgenError, match="labels"):
        class_accuracy(logits, [0, 1])
