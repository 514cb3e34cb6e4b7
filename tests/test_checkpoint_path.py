"""One save/load path for every module kind: round trips, config keys, hashes, key checks."""

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_generator
from maskgen.checkpoint import Checkpointable, save_tensors
from maskgen.errors import MaskgenError
from maskgen.pipelines.export import convert_checkpoint
from maskgen.models.classifier import ClassifierConfig, ImageClassifier
from maskgen.models.critic import TokenCritic
from maskgen.models.toast import ToastConfig, ToastModule
from maskgen.models.transformer import GeneratorConfig, MaskedTransformer
from maskgen.tokenizers.vq import VQConfig, VQTokenizer

REFERENCE = Path(__file__).resolve().parents[1] / "src" / "maskgen" / "reference"


def _perturb(module: torch.nn.Module) -> torch.nn.Module:
    """Move every floating tensor off its init, so a round trip really carries the values."""
    torch.manual_seed(3)
    with torch.no_grad():
        for v in module.state_dict().values():
            if v.is_floating_point():
                v.add_(torch.randn_like(v) * 0.1)
    return module


def _generator() -> MaskedTransformer:
    return tiny_generator()


def _kinds():
    """(name, module factory, load(folder, module)) for each module kind."""
    gen = _generator()
    gen.sha256 = "a" * 64
    return [
        ("generator", lambda: _perturb(tiny_generator()), lambda f: MaskedTransformer.load(f)),
        ("critic", lambda: _perturb(TokenCritic.for_generator(gen, width=16)), lambda f: TokenCritic.load(f)),
        ("self-guidance", lambda: _perturb(ToastModule.for_generator(gen)), lambda f: ToastModule.load(f, gen)),
        ("tokenizer", lambda: _perturb(VQTokenizer(VQConfig(codebook_size=16, code_dim=8, width=8, downsample=8))), lambda f: VQTokenizer.load(f)),
        ("classifier", lambda: _perturb(ImageClassifier(ClassifierConfig(width=8, feature_dim=16))), lambda f: ImageClassifier.load(f)),
    ]


KINDS = _kinds()
IDS = [k[0] for k in KINDS]


@pytest.mark.parametrize("name,make,load", KINDS, ids=IDS)
def test_every_kind_round_trips(tmp_path, name, make, load):
    module = make()
    assert isinstance(module, Checkpointable)
    path = module.save(tmp_path, data="embedded")
    assert path == tmp_path / f"{name}.safetensors" and (tmp_path / f"{name}.json").is_file()
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert record["kind"] == type(module).checkpoint_kind and record["data"] == "embedded" and len(record["sha256"]) == 64
    loaded = load(tmp_path)
    assert type(loaded) is type(module) and loaded.config == module.config and not loaded.training
    assert loaded.sha256 == record["sha256"]
    a, b = module.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name,make,load", KINDS, ids=IDS)
def test_bf16_copies_load_back_as_float32(tmp_path, name, make, load):
    make().save(tmp_path / "src")
    convert_checkpoint(tmp_path / "src", name, tmp_path, torch.bfloat16)
    assert json.loads((tmp_path / f"{name}.json").read_text())["dtype"] == "bfloat16"
    loaded = load(tmp_path)
    assert {v.dtype for v in loaded.state_dict().values() if v.is_floating_point()} == {torch.float32}


@pytest.mark.parametrize("config_class", [GeneratorConfig, ToastConfig, VQConfig, ClassifierConfig])
def test_unknown_config_key_is_refused_in_one_line(config_class):
    with pytest.raises(MaskgenError) as e:
        config_class.from_dict({"depthh": 3, "zz": 1})
    assert str(e.value) == f"invalid {config_class.__name__}: unknown keys depthh, zz"


def test_missing_config_keys_take_defaults_unless_required():
    assert GeneratorConfig.from_dict({"width": 64}) == GeneratorConfig(width=64)  # e.g. no time_schedule
    with pytest.raises(MaskgenError, match="^invalid ToastConfig: missing keys num_classes$"):
        ToastConfig.from_dict({"width": 8, "depth": 1})


def test_unknown_key_in_a_checkpoint_is_refused(tmp_path):
    tiny_generator().save(tmp_path)
    record = json.loads((tmp_path / "generator.json").read_text())
    record["config"]["heads_typo"] = 2
    (tmp_path / "generator.json").write_text(json.dumps(record))
    with pytest.raises(MaskgenError, match="unknown keys heads_typo") as e:
        MaskedTransformer.load(tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,make,load", KINDS, ids=IDS)
def test_tampered_weights_fail_the_hash_check(tmp_path, name, make, load):
    module = make()
    module.save(tmp_path)
    state = module.state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    save_tensors(tmp_path / f"{name}.safetensors", {**state, key: state[key] + 1})  # same keys and shapes
    with pytest.raises(MaskgenError, match="inconsistent: its sha256 does not match"):
        load(tmp_path)


@pytest.mark.parametrize("name,make,load", KINDS, ids=IDS)
def test_missing_key_is_named(tmp_path, name, make, load):
    module = make()
    state = module.state_dict()
    dropped = sorted(state)[0]
    module.save(tmp_path)
    record = json.loads((tmp_path / f"{name}.json").read_text())
    save_tensors(tmp_path / f"{name}.safetensors", {k: v for k, v in state.items() if k != dropped})
    record.pop("sha256")  # a record without a hash: only the key check can tell
    (tmp_path / f"{name}.json").write_text(json.dumps(record))
    with pytest.raises(MaskgenError, match=f"missing keys: {dropped}") as e:
        load(tmp_path)
    assert "\n" not in str(e.value)


def test_a_file_of_another_kind_is_refused(tmp_path):
    _perturb(TokenCritic.for_generator(_generator())).save(tmp_path, name="generator")
    with pytest.raises(MaskgenError, match="holds a token_critic, not a generator"):
        MaskedTransformer.load(tmp_path)


@pytest.mark.skipif(not (REFERENCE / "generator.safetensors").is_file(), reason="reference checkpoints not shipped")
def test_reference_checkpoints_still_load():
    generator = MaskedTransformer.load(REFERENCE)
    assert generator.config.time_schedule == "cosine" and generator.sha256 == json.loads((REFERENCE / "generator.json").read_text())["sha256"]
    assert VQTokenizer.load(REFERENCE).config.codebook_size == generator.config.codebook_size
    critic = TokenCritic.load(REFERENCE / "critic")  # written before time_schedule existed
    assert critic.config.time_schedule == GeneratorConfig().time_schedule
    for folder in ("self-guidance", "self-guidance-lmask"):
        assert ToastModule.load(REFERENCE / folder, generator).base_sha256 == generator.sha256
    classifier = ImageClassifier.load(REFERENCE / "classifier")
    assert classifier.class_names is not None and len(classifier.class_names) == 10
    assert all(v.dtype == torch.float32 for v in classifier.state_dict().values() if v.is_floating_point())


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp makes 0600 files: a checkpoint must get the mode a plain open() gets (umask)."""
    import os

    from maskgen.checkpoint import save_json

    save_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / "b.json").write_text("{}")
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == os.stat(tmp_path / "b.json").st_mode & 0o777
