"""Where a run executes: the device a user names (refused in one line if this machine lacks
it) and the process group ``torchrun`` describes."""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

from .errors import MaskgenError


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def distributed_setup() -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        # gloo's worker threads abort the process ("terminate called without an active
        # exception") if the group is still alive when the interpreter tears down.
        atexit.register(_leave_process_group)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def device_spec(name: str | torch.device) -> str:
    """``name`` as a string if it reads as a device (``auto``, ``cpu``, ``cuda``, ``cuda:1`` ...), else a one-line error."""
    if isinstance(name, torch.device):
        return str(name)
    if not isinstance(name, str):
        raise MaskgenError(f"device must be a string such as auto, cpu, cuda or cuda:1, got {name!r}")
    if name != "auto":
        try:
            torch.device(name)
        except (RuntimeError, ValueError):
            raise MaskgenError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    return name


def resolve_device(name: str | torch.device) -> torch.device:
    """The device ``name`` asks for, refused with one line if this machine cannot give it:
    torch would otherwise fail with a traceback at the first tensor moved there, after the
    run had already started writing."""
    name = device_spec(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            where = "in this PyTorch build (a CPU-only build)" if torch.version.cuda is None else "on this machine (no CUDA device found)"
            raise MaskgenError(f"--device {name}: CUDA is not available {where}; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise MaskgenError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise MaskgenError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    return device


def is_main_process() -> bool:
    """Whether this is rank 0 of a ``torchrun`` run (or no distributed run): the process that reports."""
    return int(os.environ.get("RANK", "0")) == 0
