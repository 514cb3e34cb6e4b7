"""A new fill rule or guidance is one class registered with its registry (in the library: one
file in ``sampling/fills/`` or ``sampling/guidances/``): with nothing else written, it appears in
``maskgen sample --help`` and takes its options there, in spec files (to_dict / from_dict, a
replayed samples.json), in tune's search space and in the app's sampler menu."""

import json
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from maskgen.cli import build_parser, main
from maskgen.sampling.fills.confidence import ConfidenceFill
from maskgen.sampling.guidance import GuidanceSpec
from maskgen.sampling.guidances.cfg import ClassifierFreeGuidance
from maskgen.sampling.registry import FILLS, GUIDANCES, PieceSpec, Uniform, option
from maskgen.sampling.spec import SamplerSpec


@dataclass
class DummySpec(PieceSpec):
    """A test's fill rule: MaskGIT's confidence rule with its Gumbel temperature called strength."""

    kind: ClassVar[str] = "dummy"
    about: ClassVar[str] = "a test's rule"
    search: ClassVar[dict] = {"strength": Uniform(0.5, 2.0, 0.1)}
    strength: float = field(default=1.0, metadata=option("dummy_strength", "Gumbel temperature (default 1)"))

    def build(self, source):
        return ConfidenceFill(self.strength, "linear")


@dataclass
class DummyGuidanceSpec(GuidanceSpec):
    """A test's guidance: classifier-free guidance with a field of its own."""

    kind: ClassVar[str] = "dummy-cfg"
    search: ClassVar[dict] = {"scale": Uniform(0.5, 1.0, 0.1)}
    width: float = field(default=2.0, metadata=option("dummy_width", "a number the guidance keeps (default 2)"))

    def build(self, source):
        return ClassifierFreeGuidance(self.scale_schedule(), source.denoiser().null_class)


@pytest.fixture
def dummies():
    FILLS.register(DummySpec)
    GUIDANCES.register(DummyGuidanceSpec)
    yield
    del FILLS[DummySpec.kind], GUIDANCES[DummyGuidanceSpec.kind]


@pytest.fixture(scope="module")
def reference():
    from maskgen.pipelines import MaskGen, reference_dir

    return MaskGen.load(reference_dir())


def test_a_registered_fill_rule_and_guidance_are_cli_options(dummies):
    from maskgen.cli.sampling import sampler_spec

    parser, verbs = build_parser()
    shown = " ".join(verbs["sample"].format_help().split())
    assert "dummy (a test's rule)" in shown and "--dummy-strength DUMMY_STRENGTH dummy rule: Gumbel temperature (default 1)" in shown
    assert "dummy-cfg" in shown and "--dummy-width DUMMY_WIDTH dummy-cfg guidance: a number the guidance keeps (default 2)" in shown
    args = parser.parse_args(["sample", "--sampler", "dummy", "--dummy-strength", "0.5", "--guidance", "dummy-cfg", "--scale", "0.7", "--dummy-width", "3", "--out", "x"])
    spec = sampler_spec(args)
    assert spec.fill == DummySpec(strength=0.5) and spec.guidance == [DummyGuidanceSpec(scale=0.7, width=3.0)]


def test_a_registered_piece_round_trips_through_spec_files(dummies, tmp_path):
    spec = SamplerSpec.from_options(sampler="dummy", dummy_strength=0.5, guidance="dummy-cfg", scale=0.7, dummy_width=3.0, steps=3)
    data = spec.to_dict()
    assert data["fill"] == {"kind": "dummy", "strength": 0.5} and data["guidance"][0]["kind"] == "dummy-cfg" and data["guidance"][0]["width"] == 3.0
    assert SamplerSpec.from_dict(json.loads(json.dumps(data))) == spec
    (tmp_path / "spec.json").write_text(json.dumps(data))
    assert SamplerSpec.from_file(tmp_path / "spec.json") == spec
    # sampled from the command line, and replayed from the samples.json it wrote
    common = ["--num", "4", "--batch-size", "4", "--device", "cpu"]
    assert main(["sample", "--sampler", "dummy", "--dummy-strength", "2", "--steps", "2", *common, "--out", str(tmp_path / "a")]) == 0
    record = json.loads((tmp_path / "a" / "samples.json").read_text())
    assert record["sampler"]["fill"] == {"kind": "dummy", "strength": 2.0}
    assert main(["sample", "--spec", str(tmp_path / "a" / "samples.json"), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "samples.json").read_text())["sampler"] == record["sampler"]


def test_a_registered_piece_joins_the_tune_search_space(dummies, reference):
    import random

    from maskgen.tuning import SearchSpace, fill_choices, guidance_choices

    assert "dummy" in fill_choices() and "dummy-cfg" in guidance_choices()
    space = SearchSpace.for_model(reference)
    assert "dummy" in space.fills and "dummy-cfg" in space.guidances
    proposals = [space.propose(random.Random(i)) for i in range(200)]
    drawn = [p.fill.strength for p in proposals if p.fill.kind == "dummy"]
    assert drawn and all(0.5 <= s <= 2.0 for s in drawn)  # its own search range
    guided = [g.scale for p in proposals for g in p.guidance if g.kind == "dummy-cfg"]
    assert guided and all(0.5 <= s <= 1.0 for s in guided)
    moved = space.perturb(next(p for p in proposals if p.fill.kind == "dummy"), random.Random(0))
    assert moved.fill.kind == "dummy" and 0.5 <= moved.fill.strength <= 2.0


def test_a_registered_fill_rule_is_in_the_app_menu(dummies, reference):
    from maskgen.app.inputs import ModelInfo, sample_request

    info = ModelInfo.of(reference)
    assert "dummy" in info.samplers and "temperature" in info.samplers["dummy"]
    assert "choice_temperature" not in info.samplers["dummy"]  # a field the rule does not have is not offered
    assert sample_request({"class": 1, "sampler": "dummy", "steps": 2}, info).spec.fill == DummySpec()
