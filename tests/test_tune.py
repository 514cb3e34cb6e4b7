"""maskgen tune: reproducible proposals, budgets kept with the NFE counted by hand, resume, replayable spec files."""

from __future__ import annotations

import json

import pytest

from maskgen.cli import main
from maskgen.errors import MaskgenError
from maskgen.pipelines import MaskGen, reference_dir
from maskgen.sampling.spec import CFGSpec, ConfidenceSpec, CriticSpec, SamplerSpec, SelfSpec
from maskgen.tuning import PAPER_SAMPLERS, NFEMeter, SearchSpace, TrialLog, paper_trials, parse_budgets, propose_trials, tune


@pytest.fixture(scope="module")
def ref_model() -> MaskGen:
    return MaskGen.load(reference_dir())


def test_same_seed_proposes_the_same_trials_in_the_same_order(ref_model):
    space, meter = SearchSpace.for_model(ref_model), NFEMeter(ref_model)
    first = [t.spec.to_dict() for t in propose_trials(space, meter, 4, 3, seed=3)]
    again = [t.spec.to_dict() for t in propose_trials(space, meter, 4, 3, seed=3)]
    other = [t.spec.to_dict() for t in propose_trials(space, meter, 4, 3, seed=4)]
    assert first == again
    assert first != other
    # adding trials only adds: the first proposals do not change
    assert [t.spec.to_dict() for t in propose_trials(space, meter, 4, 4, seed=3)][:3] == first


def test_the_reference_folder_offers_every_fill_rule_and_guidance(ref_model):
    """The shipped folder has a critic and a one-step student (reference/critic, reference/one-step)."""
    space = SearchSpace.for_model(ref_model)
    assert set(space.fills) == {"confidence", "halton", "ancestral", "flow", "critic", "one-step"}
    assert space.guidances == ["none", "cfg", "self", "cfg+self"]


# (spec, budget, steps, NFE), counted by hand: a plain step costs 1; a CFG step 2 (conditional
# + unconditional rows); a self-guidance step 2 (the TOAST pass); both 3; Token-Critic T
# generator passes + T-1 critic passes (none after the last step); CFG on (0.1, 0.3] only at
# the steps ending at s = k/T in that interval: at T = 6 only s = 1/6 (2/6 > 0.3), at T = 7
# s = 1/7 and 2/7.
BUDGETS = [
    (SamplerSpec(fill=ConfidenceSpec()), 8, 8, 8),
    (SamplerSpec(guidance=[CFGSpec(scale=2.0)]), 8, 4, 8),
    (SamplerSpec(guidance=[CFGSpec(scale=2.0)]), 7, 3, 6),
    (SamplerSpec(guidance=[SelfSpec(scale=1.0)]), 9, 4, 8),
    (SamplerSpec(guidance=[CFGSpec(scale=2.0), SelfSpec(scale=1.0)]), 8, 2, 6),
    (SamplerSpec(fill=CriticSpec()), 8, 4, 7),
    (SamplerSpec(guidance=[CFGSpec(scale=2.0, interval=(0.1, 0.3))]), 8, 6, 7),
    (SamplerSpec(guidance=[CFGSpec(scale=2.0, interval=(0.1, 0.3))]), 9, 7, 9),
]


@pytest.mark.parametrize("spec,budget,steps,nfe", BUDGETS)
def test_a_spec_gets_the_most_steps_its_budget_pays_for(ref_model, spec, budget, steps, nfe):
    meter = NFEMeter(ref_model)
    fitted = meter.fit(spec, budget)
    assert (fitted.steps, meter(fitted)) == (steps, nfe)
    _, result = ref_model.generate([0, 1, 2], ref_model.sampler(fitted), seed=5, batch_size=3, progress=False)
    assert result.nfe == nfe


def test_every_proposal_stays_within_its_budget(ref_model):
    space, meter = SearchSpace.for_model(ref_model), NFEMeter(ref_model)
    for budget in (3, 6):
        for t in propose_trials(space, meter, budget, 4, seed=0):
            assert t.budget == budget and 1 <= t.nfe <= budget
            _, result = ref_model.generate([0, 7], ref_model.sampler(t.spec), seed=1, batch_size=2, progress=False)
            assert result.nfe == t.nfe


def built_papers() -> list[str]:
    """The papers' samplers the shipped reference folder builds: Di[M]O's needs its one-step student."""
    from maskgen.pipelines import reference_dir

    return [n for n in PAPER_SAMPLERS if n != "dimo" or (reference_dir() / "one-step").is_dir()]


def test_the_papers_samplers_join_the_search_within_budget(ref_model):
    trials = paper_trials(ref_model, NFEMeter(ref_model), 8)
    # the discrete presets join too (mar and emigm set a diffusion head: continuous models only)
    assert [t.index for t in trials] == [f"paper:{name}" for name in built_papers()] + [f"preset:{n}" for n in ("di", "halton", "maskgit", "valeoai-v1")]
    by_name = {t.index: t for t in trials}
    # by hand at NFE 8: DI's code loop T - 1 passes: T = 9; Halton's constant CFG 2T: T = 4; the
    # JAX decoder T = 8; v1's CFG ramp is 0 at the first step, 2T - 1: T = 4 (NFE 7)
    assert [(by_name[f"preset:{n}"].spec.steps, by_name[f"preset:{n}"].nfe) for n in ("di", "halton", "maskgit", "valeoai-v1")] == [(9, 8), (4, 8), (8, 8), (4, 7)]
    # CFG on (0.1, 0.3] at T = 6 guides one step (s = 1/6): 6 + 1 = 7; T = 7 would cost 9
    assert (by_name["paper:cfg-interval"].spec.steps, by_name["paper:cfg-interval"].nfe) == (6, 7)
    # self-guidance 2 per step: T = 4; Token-Critic T + T - 1: T = 4, NFE 7
    assert (by_name["paper:self-guidance"].spec.steps, by_name["paper:token-critic"].spec.steps) == (4, 4)
    assert by_name["paper:ancestral-exp"].spec.schedule == "exp"


def test_a_budget_below_one_step_or_not_a_number_is_one_line():
    with pytest.raises(MaskgenError, match="below one sampling step"):
        parse_budgets("4,0")
    with pytest.raises(MaskgenError, match="unknown NFE budget 'x'"):
        parse_budgets("4,x")
    assert parse_budgets("16, 4,8,4") == [4, 8, 16]


def test_rerun_skips_scored_trials_and_redoes_a_torn_line(ref_model, tmp_path):
    calls = []

    def score(spec, num, seed):  # a stand-in for sampling + FD: deterministic in the spec
        calls.append((json.dumps(spec.to_dict(), sort_keys=True), num, seed))
        return {"fd": float(len(calls[-1][0]) % 17) + seed, "nfe": float(spec.steps), "sec_per_image": 0.0}

    kw = dict(budgets=[2, 4], num=10, rescore_num=20, seeds=[1, 2], seed=0, top=1, progress=False)
    first = tune(ref_model, score, tmp_path, trials=2, **kw)
    papers = len(built_papers())  # the reference folder builds all of them (Di[M]O's once it ships a student), at both budgets
    # and the 4 discrete presets at budget 4; at budget 2 all but valeoai-v1 (2 steps at least: NFE 3)
    presets = 4 + 3
    assert len(calls) == 2 * (2 + papers) + presets + 2 * 2  # 2 proposals + the candidates at 2 budgets, then the best of each at 2 seeds
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(calls)
    calls.clear()
    again = tune(ref_model, score, tmp_path, trials=2, **kw)
    assert calls == []
    assert [r.winner["spec"] for r in again] == [r.winner["spec"] for r in first]
    # a crash mid-write leaves a torn last line: that score alone is redone
    (tmp_path / "trials.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    tune(ref_model, score, tmp_path, trials=2, **kw)
    assert len(calls) == 1
    assert len(TrialLog(tmp_path / "trials.jsonl").records) == len(lines)
    # more trials score only the new proposals (plus a rescore if a new one ranks first)
    calls.clear()
    tune(ref_model, score, tmp_path, trials=3, **kw)
    assert sum(num == 10 for _, num, _ in calls) == 2


def _guidance_kinds(spec: dict) -> list[str]:
    return [g["kind"] for g in spec["guidance"]]


def test_a_neighbour_keeps_the_rule_and_guidances_and_stays_in_range(ref_model):
    import random

    space = SearchSpace.for_model(ref_model)
    parent = SamplerSpec(steps=6, schedule="exp", fill=ConfidenceSpec(choice_temperature=49.0),
                         guidance=[CFGSpec(scale=3.9, interval=(0.38, 0.6)), SelfSpec(scale=0.3)])
    rng = random.Random(0)
    moved = set()
    for _ in range(200):
        child = space.perturb(parent, rng)
        assert child.steps == 1 and child.fill.kind == "confidence"
        assert [g.kind for g in child.guidance] == ["cfg", "self"]
        cfg, sg = child.guidance
        assert 1.0 <= child.fill.choice_temperature <= 50.0 and 0.25 <= cfg.scale <= 4.0 and 0.25 <= sg.scale <= 2.5
        assert 0.6 <= child.draw.temperature <= 1.3
        if cfg.interval is not None:
            assert 0.0 <= cfg.interval[0] <= 0.4 and cfg.interval[0] < cfg.interval[1] <= 1.0
        moved.add((child.fill.choice_temperature, cfg.scale, sg.scale))
    assert len(moved) > 150  # the numbers move, not just the switches


def test_refinement_climbs_from_the_best_trial_so_far_and_resumes(ref_model, tmp_path):
    # a smooth stand-in objective: only the confidence rule scores well, best at Gumbel temperature 30
    def score(spec, num, seed):
        calls.append(spec)
        t = spec.fill.choice_temperature if spec.fill.kind == "confidence" else 1.0
        return {"fd": abs(t - 30.0) / 10.0 + len(spec.guidance) + (seed if num == 20 else 0), "nfe": float(spec.steps), "sec_per_image": 0.0}

    calls = []
    kw = dict(budgets=[4], trials=4, num=10, rescore_num=20, seeds=[1], seed=0, top=1, progress=False)
    plain = tune(ref_model, score, tmp_path / "a", **kw)
    refined = tune(ref_model, score, tmp_path / "b", refine=12, **kw)
    records = [json.loads(x) for x in (tmp_path / "b" / "trials.jsonl").read_text().splitlines()]
    search = [r for r in records if r["kind"] == "trial"]
    steps = [r for r in search if str(r["index"]).startswith("refine:")]
    assert [r["index"] for r in steps] == [f"refine:{j}" for j in range(12)]
    for j, r in enumerate(steps):
        before = search[: len(search) - len(steps) + j]
        parent = min(before, key=lambda x: x["fd"])  # the best of everything scored before this step
        assert r["spec"]["fill"]["kind"] == parent["spec"]["fill"]["kind"]
        assert _guidance_kinds(r["spec"]) == _guidance_kinds(parent["spec"])
    assert refined[0].trials[0]["fd"] < plain[0].trials[0]["fd"]
    # resumable and reproducible: a rerun scores nothing, a fresh folder proposes the same steps
    calls.clear()
    tune(ref_model, score, tmp_path / "b", refine=12, **kw)
    assert calls == []
    tune(ref_model, score, tmp_path / "c", refine=12, **kw)
    assert (tmp_path / "c" / "trials.jsonl").read_text() == (tmp_path / "b" / "trials.jsonl").read_text()


def test_a_negative_refinement_count_is_one_line(ref_model, tmp_path):
    with pytest.raises(MaskgenError, match="--refine must be >= 0"):
        tune(ref_model, lambda *a: {}, tmp_path, budgets=[4], refine=-1, progress=False)


def test_tune_writes_a_spec_file_that_sample_replays(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", "--out", str(out), "--nfe", "2", "--trials", "1", "--num", "10", "--rescore-num", "10", "--seeds", "1", "--top", "1"]
    assert main(argv) == 0
    assert (out / "tune.md").is_file() and (out / "trials.jsonl").is_file()
    spec = SamplerSpec.from_file(out / "spec-nfe2.json")
    assert spec.to_dict() == json.loads((out / "spec-nfe2.json").read_text())["sampler"]
    assert main(["sample", "--spec", str(out / "spec-nfe2.json"), "--num", "3", "--out", str(tmp_path / "s")]) == 0
    record = json.loads((tmp_path / "s" / "samples.json").read_text())
    assert record["settings"]["sampler"] == spec.to_dict()
    assert record["nfe"] <= 2


def test_missing_reference_statistics_is_one_line(tmp_path, capsys):
    assert main(["tune", "--out", str(tmp_path / "t"), "--ref", str(tmp_path / "none.npz"), "--nfe", "4"]) == 2
    assert "reference statistics do not exist" in capsys.readouterr().err


def test_the_search_on_a_continuous_model_offers_only_what_it_can_build():
    emigm = MaskGen.load(reference_dir() / "emigm")
    space, meter = SearchSpace.for_model(emigm), NFEMeter(emigm)
    # no token log-probabilities (confidence, critic) and no TOAST module on a continuous model
    assert set(space.fills) == {"halton", "ancestral", "flow"}
    assert space.guidances == ["none", "cfg"]  # eMIGM's CFG, and no TOAST module
    trials = propose_trials(space, meter, 4, 6, seed=0)
    assert len(trials) == 6
    for t in trials:
        assert 1 <= t.nfe <= 4
        emigm.sampler(t.spec)  # builds


def test_a_tune_folder_answers_one_question(ref_model, tmp_path, capsys):
    from maskgen.errors import MaskgenError

    def score(spec, num, seed):
        return {"fd": float(spec.steps), "nfe": float(spec.steps), "sec_per_image": 0.0}

    kw = dict(budgets=[2], trials=1, rescore_num=4, seeds=[1], seed=0, top=1, progress=False)
    tune(ref_model, score, tmp_path, num=4, **kw)
    # another sample count (or model, reference, seeds) in the same folder is refused, not mixed in
    with pytest.raises(MaskgenError, match=r"holds a tune of another question \(num 4 -> 5\)"):
        tune(ref_model, score, tmp_path, num=5, **kw)
    with pytest.raises(MaskgenError, match="model_sha256"):
        tune(ref_model, score, tmp_path, num=4, question={"model_sha256": "another"}, **{k: v for k, v in kw.items()})
    # a torn line is reported, and its score redone
    log = tmp_path / "trials.jsonl"
    log.write_text(log.read_text() + '{"key": "torn')
    capsys.readouterr()
    tune(ref_model, score, tmp_path, num=4, **kw)
    assert "1 torn line(s)" in capsys.readouterr().err


def test_repeated_seeds_are_refused():
    from maskgen.errors import MaskgenError
    from maskgen.tuning import parse_seeds

    with pytest.raises(MaskgenError, match="repeats seed 1"):
        parse_seeds("1,2,1")
    assert parse_seeds("3,1") == [3, 1]
