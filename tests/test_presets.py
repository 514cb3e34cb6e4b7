"""Each sampling preset reproduces its authors' code draw for draw.

The fixtures (tests/fixtures/presets/sample_*.safetensors, made by the scripts beside them by
running the original samplers) hold a tiny stub network, the uniforms the original code drew
(recorded in the order maskgen asks for them) and the token grid after every step. maskgen's
preset, given the same network and the same uniforms, must produce the same grid after every
step, use every uniform, and make the same number of network passes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from maskgen.errors import MaskgenError
from maskgen.sampling import SamplerSpec
from maskgen.sampling.counts import official_masked_counts, proportional_reveals
from maskgen.sampling.denoiser import DiscreteDenoiser
from maskgen.sampling.spec import preset_names
from maskgen.schedules import get_schedule

FIXTURES = Path(__file__).parent / "fixtures" / "presets"


class StubNetwork(torch.nn.Module):
    """The fixtures' stub: logits = tanh(A[x] + P + C[y] + mean_n A[x]) @ W + b over K codes."""

    def __init__(self, net: dict[str, torch.Tensor]):
        super().__init__()
        for k, v in net.items():
            self.register_buffer(k, v)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        k, n, c = net["W"].shape[1], net["P"].shape[0], net["C"].shape[0] - 1
        side = math.isqrt(n)
        self.config = SimpleNamespace(num_tokens=n, num_classes=c, mask_id=k, grid=(side, side), codebook_size=k)
        self.null_class = c

    def time_input(self, gamma, n, device):
        return None

    def forward(self, x, labels, t=None):
        a = self.A[x]
        h = a + self.P[None] + self.C[labels][:, None] + a.mean(1, keepdim=True)
        return torch.tanh(h) @ self.W + self.b


class Source:
    def __init__(self, network):
        self._denoiser = DiscreteDenoiser(network)

    def denoiser(self):
        return self._denoiser


class RecordedNoise:
    """Hands out the fixture's uniforms in order, each of the shape asked for."""

    def __init__(self, uniforms: list[torch.Tensor]):
        self.uniforms, self.used = uniforms, 0
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.uniforms[0])

    def rand(self, shape):
        assert self.used < len(self.uniforms), "maskgen asked for more draws than the original code made"
        u = self.uniforms[self.used]
        assert tuple(u.shape) == tuple(shape), f"draw {self.used}: maskgen asks {tuple(shape)}, the original drew {tuple(u.shape)}"
        self.used += 1
        return u


def load_fixture(name: str):
    path = FIXTURES / f"sample_{name}.safetensors"
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    noise = [tensors[k] for k in sorted(k for k in tensors if k.startswith("noise."))]
    states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("state."))]
    return net, tensors["labels"], noise, states, meta


def run_preset(name: str, spec: SamplerSpec):
    net, labels, noise, states, meta = load_fixture(name)
    sampler = spec.build(Source(StubNetwork(net)))
    seen: list[torch.Tensor] = []
    recorded = RecordedNoise(noise)
    result = sampler(labels, recorded, on_step=lambda i, x: seen.append(x.clone()))
    return result, seen, states, recorded, meta


def assert_draw_for_draw(seen, states, recorded):
    assert len(seen) == len(states), f"{len(seen)} steps, the original made {len(states)}"
    for i, (ours, theirs) in enumerate(zip(seen, states)):
        assert torch.equal(ours, theirs), f"step {i}: {int((ours != theirs).sum())} positions differ"
    assert recorded.used == len(recorded.uniforms), f"{len(recorded.uniforms) - recorded.used} of the original draws unused"


def test_valeoai_v1_preset_reproduces_its_sampler():
    # the fixture ran v1 with sm_temp 1.3 (its logits * 1.3 = ours / (1/1.3)), 8 steps, arccos, N = 36
    spec = SamplerSpec.preset("valeoai-v1").replace(draw=SamplerSpec.preset("valeoai-v1").draw.__class__(temperature=1 / 1.3))
    result, seen, states, recorded, meta = run_preset("valeoai-v1", spec)
    assert_draw_for_draw(seen, states, recorded)
    # v1 runs the unconditional branch also at step 0, where its ramp w i/(T-1) is 0; maskgen skips that pass
    assert float(meta["nfe"]) == 16 and result.nfe == 15


def test_halton_preset_reproduces_its_sampler():
    spec = SamplerSpec.preset("halton").replace(steps=10)  # the fixture ran its README's settings at 10 steps, N = 36
    result, seen, states, recorded, meta = run_preset("halton", spec)
    assert_draw_for_draw(seen, states, recorded)
    assert result.nfe == float(meta["nfe"]) == 20


def test_maskgit_preset_reproduces_the_official_jax_decoder():
    spec = SamplerSpec.preset("maskgit").replace(steps=6)
    result, seen, states, recorded, meta = run_preset("maskgit", spec)
    assert_draw_for_draw(seen, states, recorded)
    assert result.nfe == float(meta["nfe"]) == 6


def test_di_preset_reproduces_the_released_euler_loop_and_its_max_last():
    spec = SamplerSpec.preset("di").replace(steps=6)
    result, seen, states, recorded, meta = run_preset("di", spec)
    assert_draw_for_draw(seen, states, recorded)
    # T - 1 passes, and positions still masked after the last pass took its argmax (no extra pass)
    assert result.nfe == float(meta["nfe"]) == int(meta["passes"]) == 5
    assert int((states[-2] == 16).sum()) > 0 and not (states[-1] == 16).any()
    ts = json.loads(meta["t"])
    assert [round(1 - spec.fill.build(None).step(i, 6, get_schedule("cosine")).t, 6) for i in range(5)] == [round(t, 6) for t in ts]


def test_di_paper_loop_differs_from_the_code_loop():
    spec = SamplerSpec.preset("di").replace(steps=6)
    paper = spec.replace(fill=spec.fill.__class__(loop="paper"))
    net, labels, noise, states, meta = load_fixture("di")
    result = paper.build(Source(StubNetwork(net)))(labels, torch.Generator().manual_seed(0))
    code = spec.build(Source(StubNetwork(net)))(labels, torch.Generator().manual_seed(0))
    assert result.nfe == 6 and code.nfe == 5  # T passes against T - 1
    assert len(result.masked_per_step) == 6 and len(code.masked_per_step) == 5


def test_valeoai_v1_counts_are_its_allocation():
    # valeoai v1's adap_sche at N = 256, T = 8, arccos (by hand from its formula, in the issue)
    assert proportional_reveals(get_schedule("arccos"), 8, 256) == [1, 18, 26, 32, 38, 43, 48, 50]


def test_halton_counts_where_they_are_not_integers():
    # Halton's revealed count after step i: max(i + 1, int(N (1 - arccos((i+1)/T)/(pi/2)))); at N = 36,
    # T = 10 by hand: N (1 - arccos(0.1)/(pi/2)) = 2.29 -> 2, ... so masked 34, 32, 30, 27, 25, 22, 19, 15, 11, 0
    net, labels, noise, states, meta = load_fixture("halton")
    assert [int((s == 16).sum(1)[0]) for s in states] == [34, 32, 30, 27, 25, 22, 19, 15, 11, 0]
    expected = [36 - max(i + 1, int(36 * (1 - math.acos((i + 1) / 10) / (math.pi / 2)))) for i in range(10)]
    assert expected == [34, 32, 30, 27, 25, 22, 19, 15, 11, 0]


def test_revealed_cfg_ramp_is_mars_integer_formula():
    # MAR: mask_len = max(1, min(masked - 1, floor(N cos(pi/2 (k+1)/T)))); cfg 1 + (cfg-1)(N - mask_len)/N
    from maskgen.sampling.fill import FillRule
    from maskgen.sampling.guidance import GuidanceScale

    n, steps, cfg = 256, 16, 2.9
    masked, expected = n, []
    for k in range(steps):
        mask_len = max(1, min(masked - 1, math.floor(n * math.cos(math.pi / 2 * (k + 1) / steps))))
        masked = mask_len
        expected.append(1 + (cfg - 1) * (n - mask_len) / n)
    scale = GuidanceScale(cfg - 1, "revealed")
    got = [1 + scale.at(FillRule().step(k, steps, get_schedule("cosine"), n)) for k in range(steps)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert official_masked_counts(n, steps, get_schedule("cosine"))[-1] == 1


def test_every_preset_loads_and_options_override_it():
    assert set(preset_names()) >= {"valeoai-v1", "halton", "mar", "emigm", "di", "maskgit"}
    spec = SamplerSpec.from_options(preset="valeoai-v1", cfg=1.0, steps=12)
    assert spec.steps == 12 and spec.schedule == "arccos" and spec.fill.counts == "valeoai-v1"
    assert spec.guidance[0].scale == 1.0 and spec.guidance[0].ramp == "linear"
    other = SamplerSpec.from_options(preset="halton", sampler="confidence")
    assert other.fill.kind == "confidence" and other.draw.temperature_end == pytest.approx(1 / 1.2)
    with pytest.raises(MaskgenError, match="unknown sampler preset 'nope'; choose from"):
        SamplerSpec.from_options(preset="nope")
    with pytest.raises(MaskgenError, match="halton reveal counts"):
        SamplerSpec.from_options(preset="halton", schedule="cosine")


def test_di_code_loop_without_argmax_last_keeps_the_drawn_tokens():
    spec = SamplerSpec.preset("di").replace(steps=6)
    spec = spec.replace(draw=spec.draw.__class__(argmax_last=False))
    result, seen, states, recorded, meta = run_preset("di", spec)
    assert torch.equal(seen[-2], states[-2]) and not torch.equal(seen[-1], states[-1])
    assert not (seen[-1] == 16).any()


def test_a_head_option_beside_a_preset_keeps_its_head_sampler():
    spec = SamplerSpec.from_options(preset="mar", head_temperature=0.9)
    assert (spec.head.sampler, spec.head.steps, spec.head.temperature) == ("ddpm", 100, 0.9)
    assert SamplerSpec.from_options(preset="mar", head_sampler="dpm-solver").head.steps == 8  # another sampler: its own default


def _changed(spec: SamplerSpec, part: str, **changes) -> SamplerSpec:
    import dataclasses

    return spec.replace(**{part: dataclasses.replace(getattr(spec, part), **changes)})


V1 = SamplerSpec.preset("valeoai-v1")
V1 = _changed(V1, "draw", temperature=1 / 1.3)
HALTON = SamplerSpec.preset("halton").replace(steps=10)
DI = SamplerSpec.preset("di").replace(steps=6)
MASKGIT = SamplerSpec.preset("maskgit").replace(steps=6)


@pytest.mark.parametrize(
    "name, spec",
    [
        ("valeoai-v1", _changed(V1, "fill", counts="maskgit")),
        ("valeoai-v1", _changed(V1, "fill", annealing="linear")),
        ("halton", _changed(HALTON, "fill", counts="maskgit")),
        ("halton", _changed(HALTON, "draw", temperature_end=None)),
        ("di", _changed(DI, "fill", loop="paper")),
        ("maskgit", _changed(MASKGIT, "fill", annealing="linear-inclusive")),
    ],
)
def test_the_fixtures_tell_a_changed_piece_apart(name, spec):
    # each preset piece is needed: with maskgen's default in its place the draws diverge
    with pytest.raises(AssertionError):
        _, seen, states, recorded, _ = run_preset(name, spec)
        assert_draw_for_draw(seen, states, recorded)


def test_samples_json_records_the_preset_and_the_masked_counts(tmp_path):
    from maskgen.cli import main

    out = tmp_path / "h"
    assert main(["sample", "--preset", "halton", "--steps", "4", "--num", "3", "--out", str(out)]) == 0
    record = json.loads((out / "samples.json").read_text())
    # Halton's counts at N = 64 (8 x 8), T = 4, by hand: 64 - max(i+1, int(64 (1 - acos((i+1)/4)/(pi/2))))
    by_hand = [64 - max(i + 1, int(64 * (1 - math.acos((i + 1) / 4) / (math.pi / 2)))) for i in range(4)]
    assert by_hand == [54, 43, 30, 0]
    assert record["preset"] == "halton" and record["masked_per_step"] == by_hand and record["nfe"] == 8
    assert record["sampler"]["fill"] == {"kind": "halton", "counts": "halton", "roll": True}
    again = tmp_path / "again"
    assert main(["sample", "--spec", str(out / "samples.json"), "--out", str(again)]) == 0
    assert json.loads((again / "samples.json").read_text())["masked_per_step"] == by_hand


def _exact_halton(side: int) -> list[int]:
    """The 2-D Halton order by its definition, in exact fractions: rows base 2, columns base 3."""
    from fractions import Fraction

    def vdc(i: int, base: int) -> Fraction:
        value, scale = Fraction(0), Fraction(1, base)
        while i:
            i, digit = divmod(i, base)
            value, scale = value + digit * scale, scale / base
        return value

    order, seen, i = [], set(), 1
    while len(order) < side * side:
        cell = math.floor(vdc(i, 2) * side) * side + math.floor(vdc(i, 3) * side)
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
        i += 1
    return order


@pytest.mark.parametrize("side", [8, 9, 16, 18, 24])
def test_halton_order_is_the_exact_sequence(side):
    # 9 and 18: a float sum of digit terms lands an ulp below k/9 and floors onto the previous
    # cell; the Halton code (and its exact definition) does not
    from maskgen.sampling.fills.halton import halton_order

    assert halton_order((side, side)).tolist() == _exact_halton(side)


def test_halton_code_counts_differ_from_maskgits_floor_at_n256_t32():
    # by hand: MaskGIT keeps floor(N arccos(r)/(pi/2)) masked, Halton's code reveals
    # max(i+1, int(N (1 - arccos(r)/(pi/2)))), r = (i+1)/T; at N 256, T 32 they differ by one
    # token at every step but the last (floor against int of the complement)
    from maskgen.sampling.counts import masked_after
    from maskgen.sampling.fill import FillRule

    n, steps, schedule = 256, 32, get_schedule("arccos")
    size = torch.tensor([n])
    floor_rule, halton_rule, masked = [], [], n
    for i in range(steps - 1):
        a = math.acos((i + 1) / steps) / (math.pi / 2)
        masked = max(1, min(masked - 1, math.floor(n * a)))
        floor_rule.append(masked)
        halton_rule.append(n - max(i + 1, int(n * (1 - a))))
    ours_floor, ours_halton, remaining = [], [], size
    for i in range(steps - 1):
        step = FillRule().step(i, steps, schedule, n)
        ours_floor.append(int(masked_after("maskgit", step, size, remaining)))
        ours_halton.append(int(masked_after("halton", step, size, remaining)))
        remaining = torch.tensor([ours_floor[-1]])
    assert ours_floor == floor_rule and ours_halton == halton_rule
    assert sum(a != b for a, b in zip(floor_rule, halton_rule)) == 31
