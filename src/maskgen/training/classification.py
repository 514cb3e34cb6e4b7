"""Training loss of the image classifier, in the shape the shared trainer expects."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MaskgenError
from .context import StepContext


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
