"""Progress a user sees: a tqdm bar on a terminal, plain lines at intervals in a log file
(``maskgen.progress``), and a sampling bar that moves at every step, not once per batch."""

import re
import sys

import pytest

from maskgen.cli import main
from maskgen.progress import ENV, LineProgress, progress

LINE = re.compile(r"^(?P<desc>.+?): (?P<n>[\d,]+)/(?P<total>[\d,]+) \((?P<pct>\d+)%\) \d+:\d\d:\d\d elapsed, .+/s")


def lines(err: str, desc: str) -> list[re.Match]:
    found = [LINE.match(line) for line in err.splitlines()]
    return [m for m in found if m and m["desc"] == desc]


def test_off_a_terminal_plain_lines_at_intervals_and_at_the_end(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "0")  # a line every update
    for _ in progress(range(4), desc="work", unit="img"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [m["n"] for m in lines(err, "work")] == ["1", "2", "3", "4"]  # every update; the last is the end
    assert lines(err, "work")[-1]["pct"] == "100"
    monkeypatch.setenv(ENV, "3600")  # longer than the loop: only the end line
    bar = progress(total=60000, desc="encoding", unit="img")
    bar.update(256)
    bar.update(59744)
    bar.close()
    assert [m.group(0).split(" elapsed")[0] for m in lines(capsys.readouterr().err, "encoding")] == ["encoding: 60,000/60,000 (100%) 0:00:00"]


def test_an_erased_bar_and_a_failed_loop_print_no_end_line(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "3600")
    for _ in progress(range(3), desc="inner", leave=False):
        pass
    with pytest.raises(ValueError):
        with progress(total=3, desc="failing") as bar:
            bar.update(1)
            raise ValueError("boom")
    with pytest.raises(ValueError):
        for _ in progress(range(3), desc="failing loop"):
            raise ValueError("boom")
    assert capsys.readouterr().err == ""


def test_on_a_terminal_a_tqdm_bar(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(total=3, desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(progress(total=3, desc="x"), LineProgress)


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_interval_is_refused_before_any_work(monkeypatch, capsys, tmp_path, value):
    monkeypatch.setenv(ENV, value)
    assert main(["sample", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{ENV}={value!r}" in err
    assert not (tmp_path / "s").exists()


def test_sample_counts_steps_so_one_batch_moves(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "0")
    assert main(["sample", "--model", str(model_dir), "--num", "3", "--steps", "4", "--out", str(tmp_path / "s")]) == 0
    shown = [(m["n"], m["total"]) for m in lines(capsys.readouterr().err, "sampling 3 images")]
    assert shown[:4] == [("1", "4"), ("2", "4"), ("3", "4"), ("4", "4")]  # one batch, four steps: it moves at each
    # two batches of two steps each: one bar over all four
    assert main(["sample", "--model", str(model_dir), "--num", "3", "--batch-size", "2", "--steps", "2", "--out", str(tmp_path / "t")]) == 0
    assert [m["n"] for m in lines(capsys.readouterr().err, "sampling 3 images")][:4] == ["1", "2", "3", "4"]


def test_encode_off_a_terminal_says_how_far_it_got(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV, "0")
    tok = model_dir.parent / "tok"
    assert main(["encode", "--tokenizer", str(tok), "--out", str(tmp_path / "c"), "--batch-size", "500"]) == 0
    shown = lines(capsys.readouterr().err, "encoding tokens")
    assert [m["n"] for m in shown] == [f"{n:,}" for n in range(500, 10001, 500)] and shown[-1]["pct"] == "100"
