"""Model FLOPs and the machine's measured fp32 GEMM rate: the yardstick of the speed benchmarks.

A network's *GEMM fraction* is its model FLOP/s (FLOPs of its matrix products, counted
from the shapes it really ran, divided by its time) over the FLOP/s that one large fp32
matrix product reaches on the same machine, with the same threads, timed in the same run
(``GemmReference``, interleaved with the network's own repeats so that load from other
processes hits both). On a CPU there is no published peak to divide by, and the best
matrix product the installed PyTorch can run is the honest ceiling of what a network made
of matrix products can do.

PyTorch ships two fp32 GEMMs on CPU, and on some CPUs they differ by 2x: the BLAS behind
``torch.mm`` (MKL in the official wheels, which takes a narrower vector path on non-Intel
CPUs) and oneDNN (behind convolutions, and ``maskgen.models.fused_linear`` at inference).
``GemmReference`` times either (``backend="blas"`` or ``"onednn"``); the benchmarks print
the fraction against both, so that neither hides the other.

Counted (multiply-add = 2 FLOPs): ``nn.Linear`` (2 x rows x in x out), ``nn.Conv2d``
(2 x output elements x in/groups x kernel area) and the generator's attention (QK^T and
PV: 4 x B x S^2 x D per block, read from ``maskgen.models.transformer.Attention`` inputs).
Normalisations, activations, pooling, softmax and embeddings are not counted: they are
the overheads the fraction exposes. The counting pass runs with oneDNN switched off, so
that every layer goes through its module (``maskgen.onednn`` calls the fused kernels
directly, where no module hook sees them); the FLOPs are the same either way.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from torch import nn

from maskgen.models.transformer import Attention


class FlopCounter:
    """Adds up the FLOPs of the counted modules of ``model`` while ``counting`` is active."""

    def __init__(self) -> None:
        self.flops = 0.0

    def _linear(self, module: nn.Linear, inputs, output) -> None:
        self.flops += 2.0 * inputs[0].numel() * module.out_features

    def _conv(self, module: nn.Conv2d, inputs, output) -> None:
        kh, kw = module.kernel_size
        self.flops += 2.0 * output.numel() * module.in_channels // module.groups * kh * kw

    def _attention(self, module: Attention, inputs, output) -> None:
        b, s, d = inputs[0].shape
        self.flops += 4.0 * b * s * s * d

    @contextmanager
    def counting(self, model: nn.Module):
        kinds = ((nn.Linear, self._linear), (nn.Conv2d, self._conv), (Attention, self._attention))
        hooks = [m.register_forward_hook(fn) for m in model.modules() for kind, fn in kinds if isinstance(m, kind)]
        try:
            yield self
        finally:
            for h in hooks:
                h.remove()


def count_flops(model: nn.Module, fn) -> float:
    """FLOPs of the counted modules of ``model`` over one call of ``fn()``."""
    counter = FlopCounter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the oneDNN flag's note about TF32 on Intel GPUs
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False), counter.counting(model):
            fn()
    return counter.flops


def onednn_available(device: torch.device | str = "cpu") -> bool:
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


class GemmReference:
    """``repeats`` fp32 products of two ``size`` x ``size`` matrices: the machine's GEMM FLOP/s,
    through ``torch.mm`` (``backend="blas"``) or oneDNN's matmul (``"onednn"``)."""

    def __init__(self, size: int = 1024, repeats: int = 8, device: torch.device | str = "cpu", seed: int = 0, backend: str = "blas") -> None:
        g = torch.Generator().manual_seed(seed)
        self.a, self.b = (torch.randn(size, size, generator=g).to(device) for _ in range(2))
        self.out = torch.empty(size, size, device=device)
        self.repeats, self.size, self.backend = repeats, size, backend
        self.flops = 2.0 * size**3 * repeats

    def __call__(self) -> None:
        for _ in range(self.repeats):
            if self.backend == "onednn":
                torch.ops.mkldnn._linear_pointwise(self.a, self.b, None, "none", [], "")
            else:
                torch.mm(self.a, self.b, out=self.out)


def references(size: int, device: torch.device | str = "cpu") -> dict[str, GemmReference]:
    """The GEMM references this machine has: "blas" always, "onednn" on a CPU build with it."""
    refs = {"blas": GemmReference(size, device=device)}
    if onednn_available(device):
        refs["onednn"] = GemmReference(size, device=device, backend="onednn")
    return refs
