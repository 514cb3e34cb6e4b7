"""One writer per output folder.

Two runs writing one ``--out`` interleave their files (a width-64 config beside width-32
weights). Every verb that writes a folder holds an exclusive ``flock`` on
``<out>/.maskgen.lock`` while it runs; a second run on the same folder is refused in one
line naming the process that holds it. The operating system drops the lock when the holder
exits, so a killed run never leaves a stale lock behind; the temporary files a killed save
left are deleted when the next run takes the lock. A run that ends removes the lock file
(while it still holds the lock), so finished folders hold only what the run wrote; a run
that took the lock on a file another run removed meanwhile takes it again on the new file. Under ``torchrun`` only rank 0
locks: the other ranks of the same run share its folder by design.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .errors import MaskgenError

LOCK_NAME = ".maskgen.lock"


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the half-written ``.NAME.*.tmp`` files a killed writer left behind (atomic saves
    write there first). Safe only under the folder's lock: no live writer owns them then."""
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return stale


@contextlib.contextmanager
def folder_lock(folder: str | Path | None, scratch: bool = False) -> Iterator[None]:
    """Hold ``folder``'s lock for the duration of the block (no-op for ``None`` and ranks > 0).

    A folder this run created is removed again if nothing but the lock is left in it; with
    ``scratch`` (a working folder its holder empties, e.g. ``encode``'s), also one that a
    killed run left behind."""
    if folder is None or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    folder = Path(folder)
    created = not folder.exists()
    made = [folder, *(p for p in folder.parents if not p.exists())] if created else []  # every folder mkdir makes, deepest first
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _take(path, folder)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        remove_stale_temporaries(folder)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # under the lock: a run that opens the old file now finds it unlinked (_take)
        if (created or scratch) and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a run that failed before writing anything leaves no folder behind
            for parent in made[1:]:  # nor the parents it made for it (MODEL/self-guidance of a MODEL that is not there)
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        os.close(fd)  # closing the descriptor releases the lock


def _take(path: Path, folder: Path) -> int:
    """An open descriptor holding the exclusive lock on ``path``, which is still the file at
    that name (a run that opened it just before its holder removed it tries the new one)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise MaskgenError(f"another maskgen process (pid {holder}) is writing to {folder}; wait for it to finish or choose another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
