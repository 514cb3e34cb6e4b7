"""maskgen export: a compact copy whose pieces still fit together."""

import pytest
import torch

from maskgen.checkpoint import load_tensors
from maskgen.cli import main
from maskgen.errors import MaskgenError
from maskgen.metrics.evaluate import reference_network
from maskgen.models.toast import ToastModule
from maskgen.pipelines import MaskGen


def test_export_casts_and_restamps(model_dir, tmp_path, capsys):
    src = tmp_path / "model"
    assert main(["finetune-sg", "--model", str(model_dir), "--out", str(tmp_path / "sg"), "--steps", "1", "--batch-size", "8"]) == 0
    clf = tmp_path / "clf"
    assert main(["train-classifier", "--data", "embedded", "--out", str(clf), "--steps", "1", "--batch-size", "16", "--width", "8"]) == 0
    out = tmp_path / "exported"
    # the module lives next to the generator, as export expects
    src.mkdir()
    for f in ("generator.safetensors", "generator.json", "tokenizer.safetensors", "tokenizer.json"):
        (src / f).write_bytes((model_dir / f).read_bytes())
    (src / "self-guidance").mkdir()
    for f in ("self-guidance.safetensors", "self-guidance.json"):
        (src / "self-guidance" / f).write_bytes((tmp_path / "sg" / f).read_bytes())
    assert main(["export", "--model", str(src), "--out", str(out), "--classifier", str(clf), "--ref-data", "embedded"]) == 0
    assert {v.dtype for v in load_tensors(out / "generator.safetensors").values() if v.is_floating_point()} == {torch.bfloat16}
    model = MaskGen.load(out)
    assert model.generator.tok_emb.weight.dtype == torch.float32  # loads back as float32
    model.self_guidance_module()  # re-stamped: fits the exported generator
    with pytest.raises(MaskgenError, match="trained on generator sha256"):
        ToastModule.load(src / "self-guidance", model.generator)  # the original does not
    assert reference_network(out / "classifier" / "ref-stats.npz") == f"classifier:{out / 'classifier' / '.'}"
    assert main(["eval", "--model", str(out), "--num", "10", "--steps", "2", "--guidance", "self", "--ref", str(out / "classifier" / "ref-stats.npz"), "--out", str(tmp_path / "eval.json")]) == 0
    # the demo runs on any exported folder as it does on the shipped one
    assert main(["demo", "--model", str(out), "--num", "20", "--samplers", "confidence,self", "--out", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "self" / "grid.png").is_file()
    assert "| self |" in capsys.readouterr().out
