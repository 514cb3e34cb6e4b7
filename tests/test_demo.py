"""``maskgen demo`` on the shipped models: rows named by the options they show, and each row's
folder what ``maskgen sample`` writes for them: every scored sample and a samples.json that replays them."""

import json

import numpy as np

from maskgen.cli import main


def test_demo_rows_replay_and_keep_every_scored_sample(tmp_path, capsys):
    from maskgen.cli.verbs.demo import ROWS
    from maskgen.pipelines.demo import DEMO_SAMPLERS, sample_options

    assert tuple(DEMO_SAMPLERS) == ROWS
    demo = tmp_path / "demo"
    # an old row name still runs, under its new name
    assert main(["demo", "--num", "20", "--samplers", "maskgit,cfg", "--out", str(demo)]) == 0
    table = capsys.readouterr().out
    assert sorted(p.name for p in demo.iterdir()) == ["cfg", "confidence", "demo.json"]
    row = next(line for line in table.splitlines() if line.startswith("| cfg |"))
    assert row.rstrip().endswith("| `--sampler confidence --steps 8 --cfg 2` |")
    kept = np.load(demo / "cfg" / "samples.npz")
    assert len(kept["images"]) == len(kept["tokens"]) == len(kept["labels"]) == 20  # every scored sample
    record = json.loads((demo / "cfg" / "samples.json").read_text())
    assert record["demo"]["row"] == "cfg" and record["run"]["num"] == 20 and record["demo"]["sample_options"] == sample_options("cfg", record["model"])
    # the row's samples.json replays it exactly, as a `maskgen sample` samples.json does
    assert main(["sample", "--spec", str(demo / "cfg" / "samples.json"), "--out", str(tmp_path / "again")]) == 0
    again = np.load(tmp_path / "again" / "samples.npz")
    assert all(np.array_equal(kept[k], again[k]) for k in ("images", "labels", "tokens"))
    # and so do the options the table shows, with the run's seed, batch size and count
    argv = ["sample", *sample_options("confidence").split(), "--seed", "0", "--batch-size", "250", "--num", "20", "--out", str(tmp_path / "flags")]
    assert main(argv) == 0
    assert np.array_equal(np.load(tmp_path / "flags" / "samples.npz")["tokens"], np.load(demo / "confidence" / "samples.npz")["tokens"])
    assert sample_options("emigm-paper") == ("--model MODEL/emigm --sampler ancestral --steps 16 --schedule exp --cfg 3 --cfg-interval 0.1 0.3 "
                                             "--head-sampler dpm-solver --head-steps 8")
