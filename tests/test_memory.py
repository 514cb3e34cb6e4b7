"""The maskgen command keeps freed memory in the process (glibc): a large tensor freed at one
sampling step is reused at the next instead of being unmapped and faulted in again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest


def _has_mallinfo2() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")


pytestmark = pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 malloc only (mallinfo2 reads its state)")

# mallinfo2 (glibc >= 2.33): hblkhd = bytes in mmapped blocks, arena = bytes of heap from sbrk
PROBE = r"""
import ctypes, json, sys, torch
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    from maskgen.memory import keep_freed_memory
    assert keep_freed_memory()
elif sys.argv[1] == "cli":
    from maskgen.cli import main
    try:
        main(["--help"])  # any command line: the setting is made before it is parsed
    except SystemExit:
        pass
before = libc.mallinfo2()
x = torch.empty(48 << 20, dtype=torch.uint8)  # 48 MiB: above glibc's largest automatic mmap threshold
during = libc.mallinfo2()
del x
after = libc.mallinfo2()
print(json.dumps({"mapped": during.hblkhd - before.hblkhd, "heap_kept": after.arena - before.arena}))
"""


def probe(mode: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_by_default_glibc_maps_a_large_tensor_and_unmaps_it():
    r = probe("plain")
    assert r["mapped"] >= 48 << 20


def test_kept_memory_serves_a_large_tensor_from_the_heap_and_keeps_it_after_free():
    r = probe("keep")
    assert r["mapped"] == 0
    assert r["heap_kept"] >= 40 << 20  # the heap grew by the tensor (less what was free before) and kept it


def test_the_maskgen_command_keeps_freed_memory_unless_told_not_to():
    assert probe("cli")["mapped"] == 0
    assert probe("cli", {"MASKGEN_KEEP_FREED_MEMORY": "0"})["mapped"] >= 48 << 20
    # a user's own malloc settings win
    assert probe("cli", {"MALLOC_MMAP_THRESHOLD_": "131072"})["mapped"] >= 48 << 20
