"""Keep freed memory in the process: glibc malloc settings for CPU sampling and evaluation.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a large block (above
``M_MMAP_THRESHOLD``: 128 KiB at start, raised by itself up to 32 MiB as such blocks are freed)
with a fresh ``mmap`` and unmaps it on ``free``, and it returns a free heap top larger than
``M_TRIM_THRESHOLD`` to the kernel. A sampler allocates the same activations at every step and
the Inception network the same feature maps for every chunk, so each step gets pages the kernel
must fault in and zero again, and self-guided sampling pays more than plain sampling (its
second pass holds more blocks at once). ``benchmarks/inception_speed.py`` and
``benchmarks/sampling_speed.py`` print their figures with and without it (``--default-malloc``).

``keep_freed_memory`` raises both thresholds to 1 GiB, so blocks up to that size come from the
heap and freed ones stay there for the next step: the process keeps its peak memory instead of
returning it between steps. The ``maskgen`` command calls it at start; a Python user calls it
once. It does nothing where the C library is not glibc, where the user already tuned malloc
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``), or with
``MASKGEN_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
THRESHOLD = 1 << 30  # mallopt takes an int; 1 GiB is above any activation maskgen allocates on CPU
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB (module docstring); True if they were set."""
    if os.environ.get("MASKGEN_KEEP_FREED_MEMORY", "1") == "0" or any(k in os.environ for k in USER_SETTINGS):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; the trim threshold goes second so a refused mmap setting
    # never leaves the heap kept but large blocks still mapped one by one
    return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD))
