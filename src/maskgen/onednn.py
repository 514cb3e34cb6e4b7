"""Inference kernels through oneDNN on CPU: a linear layer (optionally with its GELU), a
bare matrix product, and a convolution with its ReLU, each one fused call.

``torch.nn.functional.linear`` on CPU calls the BLAS (MKL in the official wheels), whose
fp32 GEMM takes a narrower vector path on some CPUs than the oneDNN matmul that PyTorch
also ships and already uses for its convolutions; ``benchmarks/sampling_speed.py`` prints
the FLOP/s of both on the machine it runs on. oneDNN also applies the activation (exact erf
GELU, ReLU) to the output tile while it is in cache, so an activation is written once
instead of three times, and a convolution can keep its weights in oneDNN's blocked layout
instead of reordering them at every call (``PackedConv``).

The oneDNN ops (``torch.ops.mkldnn._linear_pointwise`` and ``_convolution_pointwise``, the
kernels ``torch.compile``'s CPU backend emits) have no autograd formula, so they are taken
only where no gradient can be needed: float32 CPU tensors with autograd off or nothing
requiring a gradient, and only when PyTorch was built with oneDNN and
``torch.backends.mkldnn.enabled`` is set (turning that flag off gives the plain modules,
called as modules so their hooks run). Both paths compute the same products and differ by
float32 rounding of the sums only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _op(name: str):
    try:
        return getattr(torch.ops.mkldnn, name) if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):  # a build without the op
        return None


_LINEAR = _op("_linear_pointwise")
_CONV = _op("_convolution_pointwise")
_REORDER_CONV = _op("_reorder_convolution_weight")


def applies(x: Tensor, weight: Tensor, bias: Tensor | None = None, op=_LINEAR) -> bool:
    """Whether the oneDNN path can run a layer with these parameters on ``x`` (module docstring)."""
    if op is None or not torch.backends.mkldnn.enabled or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    params = [p for p in (weight, bias) if p is not None]
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in params):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)))


def project(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight.T`` (``F.linear`` without bias): one oneDNN call where it applies."""
    if applies(x, weight):
        return _LINEAR(x, weight, None, "none", [], "")
    return F.linear(x, weight)


def linear(x: Tensor, layer: nn.Linear, gelu: bool = False) -> Tensor:
    """``layer(x)``, then the exact GELU if ``gelu``: one oneDNN call where it applies (module docstring)."""
    if applies(x, layer.weight, layer.bias):
        return _LINEAR(x, layer.weight, layer.bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    y = layer(x)
    return F.gelu(y) if gelu else y


class PackedConv:
    """ReLU(conv(x)) for one ``nn.Conv2d`` in one oneDNN call, its weights reordered to oneDNN's
    layout once per input shape (a handful: the chunk size and the last, shorter chunk) and
    again whenever the weights change."""

    def __init__(self, conv: nn.Conv2d, keep: int = 4) -> None:
        self.conv, self.keep = conv, keep
        self.packed: dict[tuple, Tensor] = {}
        c = conv
        self.geometry = (list(c.padding), list(c.stride), list(c.dilation), c.groups)

    def applies(self, x: Tensor) -> bool:
        return x.dim() == 4 and isinstance(self.conv.padding, tuple) and applies(x, self.conv.weight, self.conv.bias, _CONV)

    def weight(self, shape: tuple[int, ...]) -> Tensor:
        raw = self.conv.weight
        key = (*shape, raw.data_ptr(), raw._version)
        w = self.packed.get(key)
        if w is None:
            if len(self.packed) >= self.keep:
                self.packed.clear()
            padding, stride, dilation, groups = self.geometry
            w = _REORDER_CONV(raw.detach(), padding, stride, dilation, groups, list(shape)) if _REORDER_CONV else raw
            self.packed[key] = w
        return w

    def relu(self, x: Tensor) -> Tensor:
        """ReLU(conv(x)); only where ``applies(x)``."""
        padding, stride, dilation, groups = self.geometry
        return _CONV(x, self.weight(tuple(x.shape)), self.conv.bias, padding, stride, dilation, groups, "relu", [], "")
