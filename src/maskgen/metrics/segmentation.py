"""Segmentation metrics: mean intersection-over-union and pixel accuracy, what Discrete
Interpolants (Hu & Ommer 2025, Table 5) reports for image-conditioned mask generation.

Over a whole set of maps (the confusion matrix summed over images, as Cityscapes'
evaluation does): IoU_k = TP_k / (TP_k + FP_k + FN_k) for every label k that occurs in the
predictions or the ground truth (a label absent from both has no IoU and is left out of the
mean); mIoU is their mean, pixel accuracy the share of pixels labelled right.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import MaskgenError


def confusion_matrix(pred: Tensor, target: Tensor, num_labels: int) -> Tensor:
    """int64 [K, K]: entry (i, j) counts pixels of true label i predicted as j."""
    pred, target = torch.as_tensor(pred).long(), torch.as_tensor(target).long()
    if pred.shape != target.shape:
        raise MaskgenError(f"predicted maps {list(pred.shape)} and true maps {list(target.shape)} differ in shape")
    for what, m in (("predicted", pred), ("true", target)):
        if m.numel() and (int(m.min()) < 0 or int(m.max()) >= num_labels):
            raise MaskgenError(f"{what} maps hold labels outside 0..{num_labels - 1}")
    return torch.bincount(target.flatten() * num_labels + pred.flatten(), minlength=num_labels * num_labels).view(num_labels, num_labels)


def segmentation_scores(pred: Tensor, target: Tensor, num_labels: int) -> dict[str, float | list[float | None]]:
    """``miou``, ``pixel_accuracy`` and ``iou`` (per label; None where the label occurs nowhere)."""
    cm = confusion_matrix(pred, target, num_labels).double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp_min(1), torch.nan)
    total = cm.sum()
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "iou": [float(v) if p else None for v, p in zip(iou, present)],
    }
