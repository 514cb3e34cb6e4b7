"""Any guidance with any fill rule, with the NFE each combination costs (issue: combined
guidances). Expected NFE by hand: a plain step is one generator row per image, a batched CFG
branch one more, self-guidance's weak branch (TOAST, Hur et al. 2024) one more, and the
Token-Critic (Lezama et al. 2022, Alg. 2) one critic row on every step but the last."""

from __future__ import annotations

import pytest
import torch

from maskgen.errors import MaskgenError
from maskgen.pipelines import MaskGen, reference_dir
from maskgen.sampling.spec import CFGSpec, SamplerSpec, SelfSpec

LABELS = torch.tensor([0, 3, 7])
T = 6


@pytest.fixture(scope="module")
def mg():
    return MaskGen.load(reference_dir())


def nfe(mg, **options) -> tuple[float, float, float]:
    r = mg.sampler(steps=T, **options)(LABELS, torch.Generator().manual_seed(0))
    return r.nfe, r.settings["nfe_generator"], r.settings["nfe_critic"]


@pytest.mark.parametrize(
    "options, expected",
    [
        (dict(guidance="self", scale=1.0, cfg=1.0), (3 * T, 3 * T, 0)),
        # CFG only on (0.3, 0.7]: step ends s = 5/6 ... 0, so s = 4/6, 3/6, 2/6 are inside
        (dict(guidance="self", scale=1.0, cfg=1.0, cfg_interval=(0.3, 0.7)), (2 * T + 3, 2 * T + 3, 0)),
        (dict(sampler="critic", guidance="self", scale=1.0), (2 * T + T - 1, 2 * T, T - 1)),
        (dict(sampler="halton", guidance="self", scale=1.0), (2 * T, 2 * T, 0)),
    ],
)
def test_combinations_run_and_count_their_passes(mg, options, expected):
    assert nfe(mg, **options) == expected


@pytest.mark.parametrize(
    "options, cost",
    [
        # CFG on (0.3, 0.7]: steps i = 1, 2, 3 end at s = 4/6, 3/6, 2/6 and cost 2, the rest 1
        (dict(sampler="flow", cfg=1.0, cfg_interval=(0.3, 0.7)), lambda i: 2 if i in (1, 2, 3) else 1),
        # self-guidance plus CFG: 3 passes at every step
        (dict(sampler="ancestral", guidance="self", scale=1.0, cfg=2.0), lambda i: 3),
    ],
)
def test_random_reveal_rules_count_only_steps_that_run(mg, options, cost):
    # flow/ancestral may reveal everything early; a step with nothing masked runs no pass. The
    # history (masked count per image after each step) says which steps ran: step 0, and step i
    # when some image was still masked after step i - 1.
    r = mg.sampler(steps=T, **options)(LABELS, torch.Generator().manual_seed(0))
    ran = [i for i in range(T) if i == 0 or max(r.masked_per_step[i - 1]) > 0]
    assert r.settings["nfe_generator"] == sum(cost(i) for i in ran)
    assert r.nfe == r.settings["nfe_generator"]


def test_spec_with_two_guidances_replays_from_its_dict(mg):
    spec = SamplerSpec(steps=T, guidance=[SelfSpec(scale=1.0), CFGSpec(scale=2.0, interval=(0.1, 0.3))])
    again = SamplerSpec.from_dict(spec.to_dict())
    a = spec.build(mg)(LABELS, torch.Generator().manual_seed(1)).tokens
    b = again.build(mg)(LABELS, torch.Generator().manual_seed(1)).tokens
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(cfg=1.0, guidance="cfg", scale=1.0), "classifier-free guidance given twice"),
        (dict(sampler="critic", temperature=2.0), "critic fill rule sets the token temperature"),
        (dict(sampler="critic", temperature_end=0.5), "critic fill rule sets the token temperature"),
    ],
)
def test_combinations_that_cannot_work_are_refused_in_one_line(mg, options, match):
    with pytest.raises(MaskgenError, match=match) as e:
        mg.sampler(steps=T, **options)
    assert "\n" not in str(e.value)
