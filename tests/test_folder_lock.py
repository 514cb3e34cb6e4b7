"""One writer per output folder: a second run on a folder in use is refused in one line."""

import subprocess
import sys

import pytest

from maskgen.cli import main
from maskgen.errors import MaskgenError
from maskgen.folder_lock import LOCK_NAME, folder_lock

HOLD = "import sys, time; from maskgen.folder_lock import folder_lock\nwith folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n"


def test_a_second_writer_is_refused_and_named(model_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["sample", "--model", str(model_dir), "--num", "2", "--steps", "2", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"another maskgen process (pid {holder.pid}) is writing to {out}" in err
        assert not (out / "samples.npz").exists()
    finally:
        holder.kill()
        holder.wait()
    # the operating system released the killed holder's lock: the folder is usable again
    assert main(["sample", "--model", str(model_dir), "--num", "2", "--steps", "2", "--out", str(out)]) == 0


def test_the_lock_is_exclusive_and_cleans_an_unused_folder(tmp_path):
    with folder_lock(tmp_path / "a"):
        with pytest.raises(MaskgenError, match="is writing to"):
            with folder_lock(tmp_path / "a"):
                pass
    with folder_lock(tmp_path / "a"):  # free again once the first run ended
        pass
    assert not (tmp_path / "a").exists()  # nothing was written: no folder left behind
    with folder_lock(tmp_path / "b"):
        (tmp_path / "b" / "x.txt").write_text("kept")
    # what the run wrote stays; its lock file does not (a finished folder holds only the run's files)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["x.txt"]


def test_a_finished_verb_leaves_no_lock_file(model_dir, tmp_path):
    out = tmp_path / "s"
    assert main(["sample", "--model", str(model_dir), "--num", "2", "--steps", "2", "--out", str(out)]) == 0
    assert (out / "samples.json").is_file() and not (out / LOCK_NAME).exists()
    assert not (model_dir / LOCK_NAME).exists()


def test_a_run_that_opened_a_removed_lock_file_locks_the_new_one(tmp_path, monkeypatch):
    """The holder removes its lock file on the way out; a run that opened that file just before
    must not hold a lock on the unlinked file while a third run locks the new one."""
    import os

    import maskgen.folder_lock as fl

    folder = tmp_path / "r"
    folder.mkdir()
    real_open, calls = os.open, []

    def open_then_removed(path, *args):
        fd = real_open(path, *args)
        calls.append(path)
        if len(calls) == 1:
            os.unlink(path)  # the previous holder removed the file right after this run opened it
        return fd

    monkeypatch.setattr(fl.os, "open", open_then_removed)
    with folder_lock(folder):
        monkeypatch.setattr(fl.os, "open", real_open)
        assert len(calls) == 2 and (folder / LOCK_NAME).exists()  # it retried on the file at the name
        with pytest.raises(MaskgenError, match="is writing to"):
            with folder_lock(folder):
                pass


def test_other_torchrun_ranks_share_the_folder(tmp_path, monkeypatch):
    with folder_lock(tmp_path / "c"):
        monkeypatch.setenv("RANK", "1")
        with folder_lock(tmp_path / "c"):  # rank 1 of the same run: no second lock
            pass


def test_a_new_run_removes_what_a_killed_save_left(tmp_path):
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".generator.safetensors.k3j2.tmp"  # the name an atomic save writes first
    stale.write_bytes(b"half")
    kept = tmp_path / "run" / "generator.json"
    kept.write_text("{}")
    with folder_lock(tmp_path / "run"):
        assert not stale.exists() and kept.exists()
