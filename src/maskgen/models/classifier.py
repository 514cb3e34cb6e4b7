"""A small CNN image classifier: maskgen's own feature network for fast CPU metrics.

It gives three numbers that are cheap enough to compute during development: a Frechet
distance in its penultimate features ("FD-clf"), the Inception-Score formula over its own
classes ("CS") and the accuracy of samples against their conditioning labels ("class
accuracy"). None of them is comparable to Inception FID or IS: the network, its classes
and its training data differ, so they only rank runs against each other when all of them
are scored by the same classifier file (its ``sha256`` is recorded for that reason).

It satisfies :class:`maskgen.metrics.features.FeatureNetwork`: uint8 images of any square
size and 1 or 3 channels in, ``(features, logits)`` out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Checkpointable, ConfigDict
from ..data import fit_to_size
from ..data.images import to_channels
from ..errors import MaskgenError
from ..validate import number


@dataclass
class ClassifierConfig(ConfigDict):
    """Shape of an :class:`ImageClassifier`.

    A stride-2 stem, then three stages at 1/2, 1/4 and 1/8 resolution with ``width``,
    ``2*width`` and ``4*width`` channels and ``blocks`` convolutions each; then global
    average pooling, a linear layer to ``feature_dim`` (the features) and the class head.
    The early stride keeps a 32x32 forward pass cheap on a CPU: full-resolution maps
    would cost most of the time in elementwise norm/activation work. ``blocks=2`` gained
    under one point of held-out accuracy on the embedded data at half the throughput.
    """

    image_size: int = 32
    channels: int = 1
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128
    blocks: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("image_size", "channels", "num_classes", "width", "feature_dim", "blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MaskgenError(f"invalid ClassifierConfig: {name} must be a positive integer, got {v!r}")
        if self.channels not in (1, 3):
            raise MaskgenError(f"invalid ClassifierConfig: channels must be 1 or 3, got {self.channels}")
        if self.width % 8:
            raise MaskgenError(f"invalid ClassifierConfig: width must be a multiple of 8 (GroupNorm groups), got {self.width}")
        if self.image_size < 8:
            raise MaskgenError(f"invalid ClassifierConfig: image_size must be at least 8 (three halvings), got {self.image_size}")
        self.dropout = number("dropout", self.dropout, 0.0, 1.0, hi_open=True, owner="ClassifierConfig")


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: its output does not depend on the batch, so a DDP run on
    # P processes computes what one process does, and eval equals train-mode features.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(8, cout), nn.SiLU())


class ImageClassifier(nn.Module, Checkpointable):
    """uint8 images [B, C, H, W] -> (features [B, feature_dim], logits [B, num_classes])."""

    name = "maskgen-classifier"

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = [conv_block(c.channels, c.width, stride=2)]
        cin = c.width
        for stage in range(3):
            cout = c.width * 2**stage
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(c.blocks):
                layers.append(conv_block(cin, cout))
                cin = cout
        self.body = nn.Sequential(*layers)
        self.proj = nn.Linear(cin, c.feature_dim)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.feature_dim, c.num_classes)
        self.sha256: str | None = None
        self.class_names: list[str] | None = None  # from the checkpoint, when trained on named classes

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def prepare(self, images: Tensor) -> Tensor:
        """uint8 images of any square size and 1 or 3 channels -> float [-1, 1] at this network's shape."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise MaskgenError(f"the classifier expects uint8 images [B, C, H, W], got {images.dtype} {tuple(images.shape)}")
        c = self.config
        if images.shape[1] != c.channels:
            # to_channels builds its luma weights on the CPU
            images = to_channels(images.cpu(), c.channels).to(images.device)
        if images.shape[-1] != c.image_size or images.shape[-2] != c.image_size:
            pad = images.shape[-1] == 28 and c.image_size == 32  # device-safe F.pad path
            images = fit_to_size(images if pad else images.cpu(), c.image_size).to(images.device)
        # channels-last makes the oneDNN convolutions markedly faster on a CPU
        return images.float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(self.prepare(images)).mean(dim=(2, 3))
        # SiLU rather than ReLU keeps every feature alive, so the features' covariance in
        # FD-clf does not carry zero-variance directions from dead units.
        features = F.silu(self.proj(h))
        return features, self.head(self.drop(features))

    # -- persistence: ``save`` comes from Checkpointable -----------------------------------
    checkpoint_name = "classifier"
    checkpoint_kind = "image_classifier"
    config_class = ClassifierConfig

    def restore(self, record: dict, base, where: str) -> None:
        """Its class names, when recorded."""
        super().restore(record, base, where)
        names = record.get("class_names")
        self.class_names = [str(n) for n in names] if isinstance(names, list) else None
