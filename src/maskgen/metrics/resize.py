"""TF1-compatible bilinear resize, the one the reference Inception graph applies.

``tf.compat.v1.image.resize_bilinear(align_corners=False, half_pixel_centers=False)`` (the
behaviour baked into the 2015-12-05 Inception graph that FID is defined with) maps output
index ``i`` to source coordinate ``i * (in_size / out_size)``: no half-pixel offset, no
antialiasing when shrinking, and the upper neighbour is clamped at the last row/column. That
differs from ``torch.nn.functional.interpolate(mode="bilinear")`` (half-pixel centres), so
FID computed through torch's resize is not comparable with published numbers.

The arithmetic follows TF's kernel in float32: scale = float(in) / float(out), source
coordinate = index * scale, lower = floor, upper = min(ceil, in - 1), weight = coordinate -
floor; horizontal interpolation of the two rows first, then vertical.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["tf1_resize_bilinear"]


def _axis(in_size: int, out_size: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32, device=device) * scale.to(device)
    floor = torch.floor(src)
    lower = floor.long().clamp(min=0, max=in_size - 1)
    upper = torch.ceil(src).long().clamp(max=in_size - 1)
    return lower, upper, src - floor


def tf1_resize_bilinear(images: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize a batch [B, C, H, W] to ``size`` (int or (H, W)) like TF1's resize_bilinear.

    Integer inputs are converted to float32; floating inputs keep their dtype (the weights
    are always computed in float32, as TF does). Returns a new tensor even when the size is
    unchanged.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(images.shape)}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    x = images if images.is_floating_point() else images.float()
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return x.clone()
    y0, y1, wy = _axis(in_h, out_h, x.device)
    x0, x1, wx = _axis(in_w, out_w, x.device)
    wx = wx.to(x.dtype)
    wy = wy.to(x.dtype)[:, None]
    left, right = x[..., x0], x[..., x1]  # [B, C, H, out_w]
    rows = left + (right - left) * wx
    top, bottom = rows[..., y0, :], rows[..., y1, :]  # [B, C, out_h, out_w]
    return top + (bottom - top) * wy
