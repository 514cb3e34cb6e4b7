"""Classifier-based rejection sampling (004 Sec. 4.2, Table 2; Razavi et al., VQ-VAE-2).

For each requested image, draw ``k`` candidates with its class and keep the one the
classifier rates most likely for that class: an acceptance rate of 1/k. Any network that
maps uint8 images [B, C, H, W] to class logits works: maskgen's dataset classifier
(``classifier:DIR``, which returns (features, logits)) or a TorchScript file the user
supplies (``torchscript:FILE``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import MaskgenError


def load_rejection_classifier(spec: str, device: torch.device | str = "cpu") -> nn.Module:
    kind, _, arg = spec.partition(":")
    if kind == "classifier" and arg:
        from ..models.classifier import ImageClassifier

        return ImageClassifier.load(arg, map_location=device)
    if kind == "torchscript" and arg:
        if not Path(arg).is_file():
            raise MaskgenError(f"classifier file does not exist: {arg}")
        try:
            return torch.jit.load(arg, map_location=device).eval()
        except RuntimeError as e:
            raise MaskgenError(f"not a TorchScript classifier: {arg} ({str(e).splitlines()[0]})") from None
    raise MaskgenError(f"unknown rejection classifier {spec!r}; expected classifier:DIR or torchscript:FILE")


class ClassifierRejection:
    """Keep the best of ``candidates`` images per label by log p(label | image)."""

    def __init__(self, classifier: nn.Module, candidates: int):
        if candidates < 1:
            raise MaskgenError(f"rejection needs at least 1 candidate per image, got {candidates}")
        self.classifier = classifier
        self.candidates = candidates

    @classmethod
    def from_acceptance(cls, classifier: nn.Module, acceptance: float) -> "ClassifierRejection":
        if not 0.0 < acceptance <= 1.0:
            raise MaskgenError(f"acceptance rate must be in (0, 1], got {acceptance}")
        return cls(classifier, max(1, round(1.0 / acceptance)))

    @property
    def acceptance(self) -> float:
        return 1.0 / self.candidates

    @torch.no_grad()
    def scores(self, images: Tensor, labels: Tensor) -> Tensor:
        """log p(label | image) for uint8 images [M, C, H, W]."""
        device = next(self.classifier.parameters()).device
        out = self.classifier(images.to(device))
        logits = out[1] if isinstance(out, tuple) else out
        if labels.max() >= logits.shape[1]:
            raise MaskgenError(f"the rejection classifier has {logits.shape[1]} classes; class {int(labels.max())} is out of range")
        return logits.float().log_softmax(1).gather(1, labels.to(device)[:, None]).squeeze(1).cpu()

    def select(self, images: Tensor, labels: Tensor) -> Tensor:
        """Indices into ``images`` [k*B] (candidate j of image i at j*B + i) of the best per image."""
        b = len(labels) // self.candidates
        s = self.scores(images, labels).view(self.candidates, b)
        return s.argmax(0) * b + torch.arange(b)

    def settings(self) -> dict:
        return {"rejection_candidates": self.candidates, "acceptance": self.acceptance, "rejection_classifier_sha256": getattr(self.classifier, "sha256", None)}
