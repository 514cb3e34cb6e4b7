"""The one-step fill rule (a Di[M]O student, Zhu et al. 2025): NFE 1, teacher refinement
steps, inpainting keeps the given tokens, spec files replay it, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import BareGenerator, tiny_generator
from maskgen.cli import main
from maskgen.errors import MaskgenError
from maskgen.models.one_step import OneStepStudent, StudentInit
from maskgen.pipelines import MaskGen, reference_dir
from maskgen.sampling.draw import ImageNoise
from maskgen.sampling.spec import OneStepSpec, SamplerSpec


class WithStudent(BareGenerator):
    def __init__(self, network, student):
        super().__init__(network)
        self.student = student

    def one_step_student(self, folder=None):
        return self.student


def calls(module):
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    return seen


@pytest.fixture
def pair():
    teacher = tiny_generator()
    student = OneStepStudent.for_teacher(teacher, StudentInit(r_init=0.5))
    with torch.no_grad():  # a student that is no longer the teacher
        for p in student.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return teacher, student.eval()


def test_one_step_is_one_network_pass(pair):
    teacher, student = pair
    source = WithStudent(teacher, student)
    spec = SamplerSpec.from_options(sampler="one-step")
    assert spec.steps == 1 and spec.fill == OneStepSpec()  # the rule's own default: one step
    teacher_in, student_in = calls(teacher), calls(student)
    result = spec.build(source)(torch.tensor([0, 1, 2, 0]), ImageNoise(0, range(4)))
    assert result.nfe == 1 and result.settings["nfe_student"] == 1 and result.settings["nfe_generator"] == 0
    assert teacher_in == [] and len(student_in) == 1
    n = teacher.config.num_tokens
    assert ((student_in[0] == teacher.mask_id).sum(1) == round(n * 0.5)).all()  # the recorded r_init
    assert not (result.tokens == teacher.mask_id).any()
    assert result.masked_per_step == [[0] * 4]
    # the same images whatever the batch: one noise stream per image
    again = spec.build(source)(torch.tensor([0, 1]), ImageNoise(0, range(2)))
    assert torch.equal(again.tokens, result.tokens[:2])


@pytest.mark.parametrize("options, nfe, teacher_passes", [({"steps": 2}, 2, 1), ({"steps": 2, "cfg": 1.0}, 3, 1), ({"steps": 4}, 4, 3)])
def test_teacher_refinement_steps(pair, options, nfe, teacher_passes):
    """Steps after the first are the confidence rule on the generator, guided if asked."""
    teacher, student = pair
    teacher_in = calls(teacher)
    result = SamplerSpec.from_options(sampler="one-step", schedule="linear", **options).build(WithStudent(teacher, student))(torch.tensor([0, 2]), ImageNoise(1, range(2)))
    assert result.nfe == nfe and result.settings["nfe_student"] == 1
    assert len(teacher_in) == teacher_passes
    n = teacher.config.num_tokens
    t = options["steps"]
    assert result.masked_per_step[0] == [n * (t - 1) // t] * 2  # the student keeps its most confident; floor(N gamma(s)) stay masked
    assert not (result.tokens == teacher.mask_id).any()


def test_inpainting_keeps_the_given_tokens(pair):
    teacher, student = pair
    n = teacher.config.num_tokens
    given = torch.randint(0, teacher.config.codebook_size, (3, n), generator=torch.Generator().manual_seed(0))
    region = torch.zeros(3, n, dtype=torch.bool)
    region[:, : n // 2] = True
    given = given.masked_fill(region, teacher.mask_id)
    student_in = calls(student)
    result = SamplerSpec.from_options(sampler="one-step").build(WithStudent(teacher, student))(torch.tensor([0, 1, 2]), ImageNoise(2, range(3)), given=given)
    assert torch.equal(result.tokens[~region], given[~region])
    assert torch.equal(student_in[0][~region], given[~region])  # the student sees them
    assert not (result.tokens == teacher.mask_id).any()
    assert ((student_in[0][region].view(3, -1) == teacher.mask_id).sum(1) == round(n // 2 * 0.5)).all()


def test_spec_round_trip_and_options(pair):
    spec = SamplerSpec.from_options(sampler="one-step", steps=2, student="somewhere", student_r_init=0.3, choice_temperature=2.0, cfg=1.0)
    assert spec.fill == OneStepSpec(student="somewhere", r_init=0.3, choice_temperature=2.0)
    assert SamplerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(MaskgenError, match="student applies to the one-step fill rule"):
        SamplerSpec.from_options(sampler="halton", student="x")
    with pytest.raises(MaskgenError, match="r_init must be <= 1"):
        OneStepSpec(r_init=1.5)
    teacher, student = pair
    result = spec.replace(fill=OneStepSpec(r_init=0.25)).build(WithStudent(teacher, student))(torch.tensor([1]), ImageNoise(0, [0]))
    assert result.settings["sampler"]["fill"]["r_init"] == 0.25


def test_another_teacher_is_refused(pair):
    teacher, student = pair
    student.teacher_sha256, teacher.sha256 = "a" * 64, "b" * 64
    with pytest.raises(MaskgenError, match="distilled from generator sha256 aaaaaaaaaaaa"):
        SamplerSpec.from_options(sampler="one-step").build(WithStudent(teacher, student))


@pytest.fixture(scope="module")
def reference_student(tmp_path_factory):
    """A student of the shipped reference generator after one distillation step."""
    out = tmp_path_factory.mktemp("one-step") / "student"
    args = ["--steps", "1", "--batch-size", "4", "--warmup", "1", "--log-every", "1"]
    assert main(["distill", "--model", str(reference_dir()), "--out", str(out), *args]) == 0
    return out


def test_sample_replay_inpaint_on_the_reference_model(reference_student, tmp_path, capsys):
    student = ["--sampler", "one-step", "--student", str(reference_student)]
    assert main(["sample", *student, "--num", "6", "--batch-size", "4", "--out", str(tmp_path / "s")]) == 0
    assert "NFE 1 = one-step student 1 + generator 0" in capsys.readouterr().out
    record = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert record["nfe"] == 1 and record["sampler"]["fill"]["kind"] == "one-step"
    assert main(["sample", "--spec", str(tmp_path / "s" / "samples.json"), "--out", str(tmp_path / "r")]) == 0
    a, b = (np.load(tmp_path / d / "samples.npz")["tokens"] for d in "sr")
    assert np.array_equal(a, b)

    from PIL import Image

    image = np.load(tmp_path / "s" / "samples.npz")["images"][0]
    Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(tmp_path / "in.png")
    mask = np.zeros(image.shape[1:], dtype=np.uint8)
    mask[: mask.shape[0] // 2] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["inpaint", *student, "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--class", "3", "--num", "2", "--out", str(tmp_path / "i")]) == 0
    assert json.loads((tmp_path / "i" / "inpaint.json").read_text())["nfe"] == 1


def test_sampling_refusals_are_one_line(reference_student, tmp_path, capsys):
    other = tmp_path / "other"
    tiny_generator().save(other)
    for argv, phrase in (
        (["--model", str(reference_dir() / "emigm"), "--sampler", "one-step"], "one-step works on a discrete-token generator"),
        (["--sampler", "one-step", "--student", str(tmp_path)], "no one-step checkpoint"),
        (["--sampler", "one-step", "--student", str(reference_student), "--student-r-init", "2"], "r_init must be <= 1"),
    ):
        assert main(["sample", *argv, "--num", "2", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert phrase in err and err.count("\n") == 1, err
    mg = MaskGen.load(reference_dir())
    assert mg.one_step_student(reference_student).teacher_sha256 == mg.generator.sha256
    assert main(["distill", "--model", str(reference_dir() / "emigm"), "--out", str(tmp_path / "d")]) == 2
    assert "continuous-token generator" in capsys.readouterr().err


def model_with_student(folder, student):
    """The reference generator and tokenizer with ``student`` in ``folder/one-step``."""
    import shutil

    for name in ("generator", "tokenizer"):
        for suffix in (".json", ".safetensors"):
            shutil.copy(reference_dir() / f"{name}{suffix}", folder)
    if student is not None:
        shutil.copytree(student, folder / "one-step", ignore=shutil.ignore_patterns("checkpoints"))
    return folder


def test_tune_tries_the_student_at_nfe_1_and_2(reference_student, tmp_path):
    from maskgen.tuning import NFEMeter, SearchSpace, paper_trials

    mg = MaskGen.load(model_with_student(tmp_path, reference_student))
    assert "one-step" in SearchSpace.for_model(mg).fills
    meter = NFEMeter(mg)
    for budget in (1, 2):
        (dimo,) = [t for t in paper_trials(mg, meter, budget) if t.index == "paper:dimo"]
        assert (dimo.spec.steps, dimo.nfe) == (budget, budget)


def test_export_restamps_the_student_and_demo_needs_one(reference_student, tmp_path):
    from maskgen.pipelines.demo import run_reference_demo

    (tmp_path / "src").mkdir()
    src = model_with_student(tmp_path / "src", reference_student)
    # fp32: the shipped generator is bf16 already, so only another dtype changes its hash
    assert main(["export", "--model", str(src), "--out", str(tmp_path / "out"), "--dtype", "fp32"]) == 0
    mg = MaskGen.load(tmp_path / "out")
    student = mg.one_step_student()
    assert student.teacher_sha256 == mg.generator.sha256 != MaskGen.load(src).generator.sha256
    assert json.loads((tmp_path / "out" / "one-step" / "one-step.json").read_text())["dtype"] == "float32"
    (tmp_path / "bare").mkdir()
    with pytest.raises(MaskgenError, match="demo sampler one-step needs"):
        run_reference_demo(tmp_path / "demo", num=10, samplers=["one-step"], model_dir=model_with_student(tmp_path / "bare", None))


def test_the_app_offers_one_step_only_where_a_student_is(reference_student, tmp_path):
    from maskgen.app.inputs import ModelInfo

    (tmp_path / "with").mkdir()
    (tmp_path / "bare").mkdir()
    assert "one-step" in ModelInfo.of(MaskGen.load(model_with_student(tmp_path / "with", reference_student))).samplers
    assert "one-step" not in ModelInfo.of(MaskGen.load(model_with_student(tmp_path / "bare", None))).samplers
