"""The continuous-token presets (``mar``, ``emigm``) reproduce their authors' samplers draw for draw.

The fixtures (tests/fixtures/presets/sample_mar*.safetensors, sample_emigm*.safetensors, made by
``fixtures/make_preset_fixture_continuous.py`` by running MAR's and eMIGM's ``sample_tokens``
on ``mar_tiny.pth`` / ``emigm_tiny.pth``) hold the labels, every random number the original
code drew, laid out in the order and shape maskgen asks for them, and the latents and mask
after every step. maskgen's preset, on the imported model and given the same draws, must
reveal the same positions at every step, draw the same latents there, use every draw, and
make the same number of transformer and head passes.

Latents are compared to a tolerance relative to their scale: a random-weight head's eps is far
from x at the chain's noisy end, so x0 = x / sqrt(abar) multiplies float32 rounding by about
160 at step 995 (2e4 at MAR's 999), and the revealed latents reach hundreds (tens of
thousands); a wrong draw anywhere moves them by O(1) or more.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from maskgen.convert.mar import convert_mar
from maskgen.sampling import SamplerSpec
from maskgen.sampling.continuous import ContinuousDenoiser
from maskgen.sampling.draw import ImageNoise
from maskgen.sampling.head_sampler import HeadSampling, space_timesteps

FIXTURES = Path(__file__).parent / "fixtures"


class Source:
    def __init__(self, network):
        self.network = network

    def denoiser(self):
        return ContinuousDenoiser(self.network)


class RecordedNoise(ImageNoise):
    """Hands out the fixture's draws in order, each of the kind and shape asked for; an
    ``ImageNoise`` so that a head draw asks for [B, N, d] and keeps the revealed rows."""

    def __init__(self, draws: list[torch.Tensor], kinds: list[str], skip: bool = False):
        """``skip``: pass over recorded draws of another kind or shape than the one asked for
        (a sampler without a piece that drew them, replayed step by step on the same draws)."""
        assert len(draws) == len(kinds)
        self.draws, self.kinds, self.used, self.skip = draws, kinds, 0, skip
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.draws[0])

    def _next(self, kind: str, shape) -> torch.Tensor:
        while self.skip and self.used < len(self.draws) and (self.kinds[self.used], tuple(self.draws[self.used].shape)) != (kind, tuple(shape)):
            self.used += 1
        assert self.used < len(self.draws), "maskgen asked for more draws than the original code made"
        u, k = self.draws[self.used], self.kinds[self.used]
        assert k == kind, f"draw {self.used}: maskgen asks {kind}, the original drew {k}"
        assert tuple(u.shape) == tuple(shape), f"draw {self.used}: maskgen asks {tuple(shape)}, the original drew {tuple(u.shape)}"
        self.used += 1
        return u

    def rand(self, shape):
        return self._next("rand", shape)

    def randn(self, shape):
        return self._next("randn", shape)


def load(name: str):
    path = FIXTURES / "presets" / f"sample_{name}.safetensors"
    t = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    pick = lambda prefix: [t[k] for k in sorted(k for k in t if k.startswith(prefix))]  # noqa: E731
    return t["labels"], pick("noise."), pick("state."), pick("mask."), meta


def run(model: str, fixture: str, spec: SamplerSpec, skip: bool = False):
    labels, noise, states, masks, meta = load(fixture)
    network = convert_mar(FIXTURES / f"{model}_tiny.pth", heads=2)
    recorded = RecordedNoise(noise, json.loads(meta["draws"]), skip)
    seen: list[torch.Tensor] = []
    result = spec.build(Source(network))(labels, recorded, on_step=lambda i, x: seen.append(x.clone()))
    return result, seen, states, masks, recorded, meta


def assert_draw_for_draw(seen, states, masks, recorded, rtol: float):
    assert len(seen) == len(states), f"{len(seen)} steps, the original made {len(states)}"
    for i, (ours, theirs, mask) in enumerate(zip(seen, states, masks)):
        masked = ours.isnan().any(-1)
        assert torch.equal(masked, mask.bool()), f"step {i}: {int((masked != mask.bool()).sum())} positions masked differently"
        assert ours.isnan().all(-1).eq(masked).all()
        torch.testing.assert_close(ours.nan_to_num(0.0), theirs, rtol=0, atol=rtol * float(theirs.abs().max()), msg=lambda m: f"step {i}: {m}")
    assert recorded.used == len(recorded.draws), f"{len(recorded.draws) - recorded.used} of the original draws unused"


def mar_spec(chain: str = "full") -> SamplerSpec:
    # the fixture ran MAR's README settings (cfg 2.9 linear, temperature 1) at 4 iterations, 10 DDPM steps
    spec = SamplerSpec.preset("mar")
    return spec.replace(steps=4, head=HeadSampling(sampler="ddpm", steps=10, temperature=spec.head.temperature, chain=chain))


def test_mar_preset_reproduces_its_released_sampler():
    # as released, MAR's DDPM runs 999 -> 0 (space_timesteps(1000, "10")): the preset's chain "full"
    result, seen, states, masks, recorded, meta = run("mar", "mar", mar_spec())
    assert json.loads(meta["chain"]) == space_timesteps(1000, 10) and json.loads(meta["chain"])[-1] == 999
    assert_draw_for_draw(seen, states, masks, recorded, rtol=1e-5)
    assert result.nfe == float(meta["nfe"]) == 8 and result.settings["nfe_head"] == 80


def test_mar_preset_reproduces_its_sampler_on_the_clipped_chain():
    # MAR's sample_tokens with its head's chain respaced over steps 0..995 (its own SpacedDiffusion),
    # where maskgen's DDPM starts: every other piece is MAR's as released
    result, seen, states, masks, recorded, meta = run("mar", "mar_chain996", mar_spec("clipped"))
    assert json.loads(meta["chain"]) == space_timesteps(996, 10)
    assert_draw_for_draw(seen, states, masks, recorded, rtol=1e-5)
    assert result.nfe == float(meta["nfe"]) == 8  # cond + uncond every step
    assert result.settings["nfe_head"] == float(meta["nfe_head"]) == 80
    assert [int(m.sum(1)[0]) for m in masks] == [14, 11, 6, 0]


def test_mar_released_chain_differs_only_in_where_it_starts():
    # maskgen's default chain starts at 995: the same positions, other latents
    result, seen, states, masks, recorded, meta = run("mar", "mar", mar_spec("clipped"))
    assert all(torch.equal(s.isnan().any(-1), m.bool()) for s, m in zip(seen, masks))
    assert not torch.allclose(seen[0].nan_to_num(0.0), states[0], atol=1.0)

PAPER_ANCESTRAL = {"equal_counts": False, "reveal_one": False, "time_grid": "exact"}  # AncestralSpec's defaults


def emigm_spec(steps: int, **fill) -> SamplerSpec:
    # eMIGM's evaluate_256.sh settings (exp, cfg 4 on (0.1, 0.3], DPM-Solver 8 steps) at fewer iterations
    spec = SamplerSpec.preset("emigm")
    return spec.replace(steps=steps, fill=dataclasses.replace(spec.fill, **fill))


@pytest.mark.parametrize("fill", [{}, PAPER_ANCESTRAL], ids=["preset", "paper-rule"])
def test_emigm_preset_reproduces_its_sampler_at_4_steps(fill):
    # at 4 steps the fixture's seed is one where eMIGM's code conventions do not bite (its reveal-one
    # branch is not taken, its linspace grid makes the reveals and CFG steps of t = (T - i)/T, and its
    # equal counts are what per-row draws give on the recorded uniforms): the preset, and the paper's
    # rule with the three conventions off, both reproduce it
    result, seen, states, masks, recorded, meta = run("emigm", "emigm", emigm_spec(4, **fill))
    # DPM-Solver: eMIGM's schedule and lambda round trips in float32, maskgen's in float64
    assert_draw_for_draw(seen, states, masks, recorded, rtol=2e-4)
    assert json.loads(meta["cfg_steps"]) == [False, False, True, False]  # s = 0.25 only
    assert result.nfe == float(meta["nfe"]) == 5
    assert result.settings["nfe_head"] == float(meta["nfe_head"]) == 40
    # its reveals: every image the same count (it permutes row 0's uniforms into each row)
    assert all(len(set(m.sum(1).tolist())) == 1 for m in masks)


def test_emigm_preset_reproduces_its_sampler_where_its_conventions_bite():
    # 10 steps, seed 0: its reveal-one branch is taken, per-row draws on the recorded uniforms would give
    # the images other counts than row 0's, and its linspace grid guides the steps ending at s = 0.2 and
    # 0.1 (0.300007 is out of (0.1, 0.3]) where t = (T - i)/T guides those ending at 0.3 and 0.2
    result, seen, states, masks, recorded, meta = run("emigm", "emigm_conventions", emigm_spec(10))
    bites = json.loads(meta["bites"])
    assert bites["reveal_one"] and bites["equal_counts"]
    assert bites["cfg_steps"] == [7, 8] and bites["cfg_steps_exact_grid"] == [6, 7]
    assert sum(n.dim() == 1 for n in recorded.draws) == len(bites["reveal_one"])  # its reveal-one picks, [B] each
    assert_draw_for_draw(seen, states, masks, recorded, rtol=2e-4)
    assert result.nfe == float(meta["nfe"]) == 12  # CFG on 2 of 10 steps
    assert result.settings["nfe_head"] == float(meta["nfe_head"]) == 96
    assert [int(m.sum(1)[0]) for m in masks] == [15, 14, 13, 12, 11, 10, 8, 7, 4, 0]
    assert all(len(set(m.sum(1).tolist())) == 1 for m in masks)


def masks_differ(seen, masks) -> bool:
    return any(not torch.equal(ours.isnan().any(-1), mask.bool()) for ours, mask in zip(seen, masks))


@pytest.mark.parametrize("off", [PAPER_ANCESTRAL, {"equal_counts": False}, {"reveal_one": False}, {"time_grid": "exact"}],
                         ids=["all-three", "equal-counts", "reveal-one", "time-grid"])
def test_emigm_conventions_fixture_needs_each_convention(off):
    # the same draws, step by step (a draw the sampler does not ask for is passed over), without the
    # convention(s): per-row counts or no reveal-one pick change the masks; the exact grid keeps them
    # (no uniform lies between its p and the linspace grid's) but guides step 6 instead of step 8
    result, seen, states, masks, recorded, meta = run("emigm", "emigm_conventions", emigm_spec(10, **off), skip=True)
    if off == {"time_grid": "exact"}:
        assert not masks_differ(seen, masks) and json.loads(meta["bites"])["exact_grid_reveals"] == []
        assert not torch.allclose(seen[6].nan_to_num(0.0), states[6], rtol=0, atol=2e-4 * float(states[6].abs().max()))
    else:
        assert masks_differ(seen, masks)


@pytest.mark.parametrize("fixture", ["mar", "mar_chain996", "emigm", "emigm_conventions"])
def test_continuous_fixtures_record_their_draw_kinds(fixture):
    labels, noise, states, masks, meta = load(fixture)
    kinds = json.loads(meta["draws"])
    assert len(kinds) == len(noise) and set(kinds) <= {"rand", "randn"}
    assert all(n.dtype == torch.float32 for n in noise)
    rand = ((3, 16), (3,)) if fixture == "emigm_conventions" else ((3, 16),)  # (3,): eMIGM's reveal-one picks
    assert all(tuple(n.shape) in (rand if k == "rand" else ((3, 16, 4),)) for n, k in zip(noise, kinds))
    assert all(bool((s[m.bool()] == 0).all()) for s, m in zip(states, masks))  # masked latents are zero
