"""Training maskgen's small image classifier and scoring images with it.

The classifier is the feature network for fast CPU metrics (FD-clf, CS, class accuracy;
see :mod:`maskgen.models.classifier`). Its training loss has the shape the shared trainer
expects (``ClassificationObjective``). Its held-out accuracy is reported so a reader can
judge how much those metrics are worth: on the Fashion-MNIST test split when the data is
Fashion-MNIST, otherwise on 10% of the data set aside before training.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..checkpoint import save_json
from ..data import absolute_spec, fingerprint, open_dataset, open_images
from ..errors import MaskgenError
from ..metrics.features import extract
from ..models.classifier import ClassifierConfig, ImageClassifier
from ..progress import progress as progress_bar
from .context import StepContext
from .trainer import Trainer, TrainConfig, seeded


def random_shift(images: Tensor, shift: int, ctx: StepContext) -> Tensor:
    """Translate each image by up to ``shift`` pixels each way, filling with 0 (black).

    Zero fill matches the padding ``fit_to_size`` gives 28x28 sources, so shifted images
    look like real ones. The offsets come from ``ctx`` (drawn for the global batch), which
    keeps resume and DDP runs identical to a single uninterrupted one.
    """
    b, _, h, w = images.shape
    span = 2 * shift + 1
    offsets = (ctx.draw(torch.rand, 2) * span).long().clamp_(max=span - 1).to(images.device)
    padded = F.pad(images, (shift, shift, shift, shift), value=0)
    rows = offsets[:, :1] + torch.arange(h, device=images.device)  # [B, H]
    cols = offsets[:, 1:] + torch.arange(w, device=images.device)  # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    # advanced indices around a slice put their dims first: [B, H, W, C]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


@dataclass
class ClassificationObjective:
    """Cross-entropy on class labels, with light augmentation.

    ``shift``: random translation of up to this many pixels (0 disables it).
    ``flip``: random horizontal flips; off by default because they change the class of
    digits and text, while clothing and natural images tolerate them.
    ``label_smoothing`` is 0 by default: the classifier score reads the softmax, and
    smoothing would cap its confidence.
    """

    shift: int = 2
    flip: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise MaskgenError(f"shift must be >= 0, got {self.shift}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise MaskgenError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def augment(self, images: Tensor, ctx: StepContext) -> Tensor:
        if self.shift:
            images = random_shift(images, self.shift, ctx)
        if self.flip:
            flip = (ctx.draw(torch.rand) < 0.5).to(images.device)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        images, labels = batch
        if images.dtype != torch.uint8:
            raise MaskgenError(f"the classifier trains on uint8 images, got {images.dtype}")
        _, logits = model(self.augment(images, ctx))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(-1) == labels).float().mean()
        return loss, {"loss": float(loss.detach()), "acc": float(acc)}


HELDOUT_FRACTION = 0.1
HELDOUT_SEED = 0  # fixed, not the training seed: runs with different seeds share one held-out set


def recommended_train_config(**overrides: Any) -> TrainConfig:
    """Training settings for the default classifier: about 88% held-out accuracy on the
    embedded data in 1500 steps (a few CPU minutes). EMA did not help: the cosine decay
    to ``min_lr`` already averages the end of training."""
    return TrainConfig(**{"steps": 1500, "batch_size": 128, "lr": 2e-3, "warmup": 100, **overrides})


class Subset(Dataset):
    """Items ``indices`` of an image dataset, keeping its fast ``batch`` and class names."""

    def __init__(self, base: Dataset, indices: Tensor):
        self.base = base
        self.indices = indices.long()
        self.class_names = list(base.class_names)
        self.labels = base.labels[self.indices]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, i: int):
        return self.base[int(self.indices[i])]

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.batch(self.indices[torch.as_tensor(indices, dtype=torch.long)])


def heldout_split(labels: Tensor, fraction: float = HELDOUT_FRACTION, seed: int = HELDOUT_SEED) -> tuple[Tensor, Tensor]:
    """(train indices, held-out indices): ``fraction`` of every class, drawn with ``seed``.

    Per class, so a class-balanced set stays balanced on both sides.
    """
    g = torch.Generator().manual_seed(seed)
    train, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = int(round(idx.numel() * fraction))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(held).sort().values


def _is_fashion_mnist(spec: str) -> bool:
    spec = spec.strip()
    return spec == "fashion-mnist" or spec.startswith("fashion-mnist:")


def class_accuracy(logits: Tensor | np.ndarray, labels: Tensor | np.ndarray) -> float:
    """Fraction of rows whose arg-max class equals the label."""
    logits, labels = torch.as_tensor(np.asarray(logits)), torch.as_tensor(np.asarray(labels)).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise MaskgenError(f"logits {tuple(logits.shape)} do not match {labels.shape[0]} labels")
    if labels.numel() == 0:
        raise MaskgenError("class accuracy of an empty set is undefined")
    return float((logits.argmax(-1) == labels.long()).double().mean())


def classifier_metrics(
    clf: ImageClassifier, images: Tensor | np.ndarray, labels: Tensor | np.ndarray, batch_size: int = 500, progress: bool = False
) -> dict[str, float]:
    """Class accuracy of uint8 images [N, C, H, W] against their (conditioning) labels."""
    labels = np.asarray(labels).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= clf.num_classes):
        raise MaskgenError(f"labels must lie in 0..{clf.num_classes - 1} for this classifier, got {labels.min()}..{labels.max()}")
    was_training = clf.training
    clf.eval()
    try:
        _, logits = extract(clf, images, batch_size=batch_size, progress=progress)
    finally:
        clf.train(was_training)
    return {"class_accuracy": class_accuracy(logits, labels)}


@torch.no_grad()
def dataset_accuracy(clf: ImageClassifier, dataset: Dataset, batch_size: int = 500, progress: bool = False) -> float:
    """Accuracy of ``clf`` (in eval mode) on an image dataset with ``batch``."""
    clf.eval()
    device = next(clf.parameters()).device
    correct, n = 0, len(dataset)
    for start in progress_bar(range(0, n, batch_size), desc="held-out accuracy", disable=not progress):
        images, labels = dataset.batch(torch.arange(start, min(n, start + batch_size)))
        _, logits = clf(images.to(device))
        correct += int((logits.argmax(-1).cpu() == labels).sum())
    return correct / n


def train_classifier(
    data: str,
    out: str | Path,
    config: ClassifierConfig,
    train: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
    objective: ClassificationObjective | None = None,
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Train the classifier on ``data``; return it (EMA weights when EMA is on) and its metrics.

    ``config.num_classes`` is taken from the data. The metrics (held-out accuracy, held-out
    set, training time) are also written to ``out/metrics.json``.
    """
    dataset = open_images(data, "train-classifier", image_size=config.image_size, channels=config.channels)
    config = replace(config, num_classes=dataset.num_classes)
    if _is_fashion_mnist(data):
        train_set = dataset
        heldout = open_dataset(data, image_size=config.image_size, channels=config.channels, split="test")
        how = "test split"
    else:
        train_idx, held_idx = heldout_split(dataset.labels)
        train_set, heldout = Subset(dataset, train_idx), Subset(dataset, held_idx)
        how = f"{HELDOUT_FRACTION:.0%} of the data per class, seed {HELDOUT_SEED}, not trained on"
    if len(heldout) == 0:
        raise MaskgenError(f"{data} is too small to hold out {HELDOUT_FRACTION:.0%} for measuring accuracy")
    model = seeded(train.seed, lambda: ImageClassifier(config))
    objective = objective or ClassificationObjective()
    record = {"data": absolute_spec(data), "data_fingerprint": fingerprint(dataset), "class_names": list(dataset.class_names), "heldout": how, "objective": asdict(objective)}
    trainer = Trainer(model, objective, train_set, train, out, save_model=lambda m, folder: m.save(folder, **record), record=record)
    start = time.perf_counter()
    trainer.fit(resume=resume, progress=progress, until=until)
    seconds = time.perf_counter() - start
    if trainer.rank != 0:
        return model, {}
    model = ImageClassifier.load(out, map_location=trainer.device)
    metrics = {
        "data": data,
        "steps": trainer.step,
        "heldout": how,
        "heldout_size": len(heldout),
        "accuracy": dataset_accuracy(model, heldout, progress=progress),
        "train_seconds": round(seconds, 1),
        "classifier_sha256": model.sha256,
    }
    save_json(Path(out) / "metrics.json", metrics)
    return model, metrics
