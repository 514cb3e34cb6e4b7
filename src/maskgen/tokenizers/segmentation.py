"""The segmentation tokenizer: a label map to a grid of label tokens and back.

Discrete Interpolants (Hu & Ommer 2025, Sec. 3.4 and appendix) tokenizes each modality with
its own tokenizer and found a vocabulary of the labels themselves best for the segmentation
map: here a token is the majority label of its ``patch`` x ``patch`` pixels (ties to the
smaller label), so K_seg = ``num_labels``, and decoding repeats each token over its patch
(nearest-neighbour upsampling). Nothing is learned; the checkpoint holds the config and the
colour palette segmentations are drawn with (label i in colour ``palette[i]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import Checkpointable, ConfigDict
from ..errors import MaskgenError
from ..validate import integer


@dataclass
class SegmentationTokenizerConfig(ConfigDict):
    num_labels: int = 11
    image_size: int = 32
    patch: int = 4  # pixels per token side: the image tokenizer's downsampling, so both grids match

    def __post_init__(self) -> None:
        o = "SegmentationTokenizerConfig"
        for name in ("num_labels", "image_size", "patch"):
            setattr(self, name, integer(name, getattr(self, name), 1, o))
        if self.image_size % self.patch:
            raise MaskgenError(f"invalid {o}: image size {self.image_size} is not a multiple of the patch {self.patch}")


def default_palette(num_labels: int) -> Tensor:
    """uint8 [K, 3]: black for label 0 (background), then evenly spaced hues at full value."""
    import colorsys

    rows = [(0, 0, 0)] + [tuple(round(255 * v) for v in colorsys.hsv_to_rgb((i - 1) / max(1, num_labels - 1), 0.85, 1.0)) for i in range(1, num_labels)]
    return torch.tensor(rows, dtype=torch.uint8)


class SegmentationTokenizer(nn.Module, Checkpointable):
    """``encode``: label maps int [B, S, S] -> tokens int64 [B, h, w]; ``decode`` the reverse."""

    checkpoint_name = "seg-tokenizer"
    checkpoint_kind = "segmentation_tokenizer"
    config_class = SegmentationTokenizerConfig

    def __init__(self, config: SegmentationTokenizerConfig):
        super().__init__()
        self.config = config
        self.register_buffer("palette", default_palette(config.num_labels))
        self.sha256: str | None = None

    @property
    def codebook_size(self) -> int:
        return self.config.num_labels

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // self.config.patch
        return (side, side)

    def check_maps(self, maps: Tensor) -> Tensor:
        """``maps`` as int64 [B, S, S], refused in one line if a label or the size is wrong."""
        c = self.config
        if maps.dim() != 3 or tuple(maps.shape[1:]) != (c.image_size, c.image_size):
            raise MaskgenError(f"label maps must be [B, {c.image_size}, {c.image_size}], got {list(maps.shape)}")
        if maps.dtype.is_floating_point:
            raise MaskgenError(f"label maps must hold integers, got {maps.dtype}")
        if maps.numel() and (int(maps.min()) < 0 or int(maps.max()) >= c.num_labels):
            bad = int(maps.max()) if int(maps.max()) >= c.num_labels else int(maps.min())
            raise MaskgenError(f"label value {bad} out of range: this model knows labels 0..{c.num_labels - 1}")
        return maps.long()

    def encode(self, maps: Tensor) -> Tensor:
        """Majority label per patch: int64 [B, h, w]."""
        maps = self.check_maps(maps)
        p, k = self.config.patch, self.config.num_labels
        counts = F.avg_pool2d(F.one_hot(maps, k).permute(0, 3, 1, 2).float(), p)  # [B, K, h, w]
        return counts.argmax(1)  # argmax returns the first maximum: ties go to the smaller label

    def decode(self, tokens: Tensor) -> Tensor:
        """Each token repeated over its patch: int64 [B, S, S]."""
        h, w = self.grid
        tokens = tokens.reshape(len(tokens), h, w)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.num_labels):
            raise MaskgenError(f"segmentation tokens must lie in 0..{self.config.num_labels - 1}")
        p = self.config.patch
        return tokens.long().repeat_interleave(p, 1).repeat_interleave(p, 2)

    def colour(self, maps: Tensor) -> Tensor:
        """Label maps [B, S, S] as colour pictures uint8 [B, 3, S, S] (the palette's colours)."""
        return self.palette[self.check_maps(maps)].permute(0, 3, 1, 2).contiguous()
