"""Feature networks: what every metric reads images through.

A feature network maps uint8 images [B, C, H, W] (any size, 1 or 3 channels) to pooled
features [B, D] and, where it has a class head, logits [B, K]. ``extract`` runs one over a
whole set in batches with a progress bar, on the network's device.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np
import torch
from torch import Tensor
from ..progress import progress as progress_bar


class FeatureNetwork(Protocol):
    name: str  # e.g. "inception-pool3" or "maskgen-classifier"
    sha256: str | None  # hash of the weights file it was read from
    num_classes: int | None  # size of the logits, None when it has no class head

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """uint8 images [B, C, H, W] -> (features [B, D] float, logits [B, K] or None)."""
        ...


def batches(images: np.ndarray | Tensor, batch_size: int) -> Iterable[Tensor]:
    for start in range(0, len(images), batch_size):
        yield torch.as_tensor(np.asarray(images[start : start + batch_size]))


@torch.no_grad()
def extract(
    net: FeatureNetwork, images: np.ndarray | Tensor, batch_size: int = 200, device: torch.device | str | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (float64 [N, D]) and logits (float64 [N, K] or None) of a uint8 image set."""
    feats, logits = [], []
    device = device or next(iter(getattr(net, "parameters", lambda: iter([torch.empty(0)]))())).device
    total = (len(images) + batch_size - 1) // batch_size
    for x in progress_bar(batches(images, batch_size), total=total, desc=f"features ({net.name})", disable=not progress):
        f, l = net(x.to(device))
        feats.append(f.double().cpu())
        if l is not None:
            logits.append(l.double().cpu())
    f = torch.cat(feats).numpy()
    return f, (torch.cat(logits).numpy() if logits else None)
