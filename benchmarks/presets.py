"""docs/results-presets.md from one command: what each authors' code's conventions cost or gain.

Every sampling preset (docs/presets.md) is scored against its *paper twin*: the same spec with
each code-only piece put back to maskgen's paper-faithful default (reveal counts ``maskgit``,
Gumbel annealing ``linear``, no temperature ramp, no Halton roll, the flow rule's paper loop,
MAR's ``random-order`` as ``random`` and its DDPM chain from step 995, eMIGM's equal counts,
reveal-one and linspace grid off), at the same NFE budget, on the same labels and seed. Both are fitted to each budget by ``NFEMeter`` (the most steps whose measured NFE fits), so a pair
can differ in steps where the code spends a pass differently (DI's code loop makes T - 1
passes; v1's CFG ramp is 0 at the first step). A preset with no code-only piece (``maskgit``:
the official decoder is maskgen's default) has no twin and is left out, said so on the page.
The continuous presets run on ``--emigm`` (the continuous reference model).

Verdict rule, fixed before the run: a preset and its twin differ only when their FDs are more
than twice the seed standard deviation apart, the sd pooled from the noise rows (the first
discrete preset and its twin at the largest budget, rerun at ``--noise-seeds``).

    python benchmarks/presets.py --model src/maskgen/reference --ref src/maskgen/reference/classifier/ref-stats.npz \\
        --emigm src/maskgen/reference/emigm --num 500 --threads 2 --nfe 8,16 --noise-seeds 1,2,3 \\
        --out runs/presets --doc docs/results-presets.md
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

from comparison import Bench, add_common_args, markdown
from maskgen.errors import MaskgenError
from maskgen.sampling.spec import SamplerSpec, preset_names
from maskgen.tuning import NFEMeter, describe

CONTINUOUS = ("mar", "emigm")


def paper_twin(spec: SamplerSpec) -> SamplerSpec | None:
    """``spec`` with every piece that only an authors' code has put back to maskgen's default
    (None: it has none, the preset is maskgen's default sampler)."""
    fill, draw = spec.fill, spec.draw
    changes: dict[str, Any] = {}
    if getattr(fill, "counts", "maskgit") != "maskgit":
        changes["counts"] = "maskgit"
    if getattr(fill, "annealing", None) == "linear-inclusive":
        changes["annealing"] = "linear"
    if getattr(fill, "annealing", None) == "random-order":
        changes["annealing"] = "random"
    if getattr(fill, "roll", False):
        changes["roll"] = False
    if getattr(fill, "loop", "paper") == "code":
        changes["loop"] = "paper"
    for name, paper in (("equal_counts", False), ("reveal_one", False), ("time_grid", "exact")):  # eMIGM's code
        if getattr(fill, name, paper) != paper:
            changes[name] = paper
    twin = spec.replace(fill=dataclasses.replace(fill, **changes)) if changes else spec
    if draw.temperature_end is not None:
        twin = twin.replace(draw=dataclasses.replace(draw, temperature_end=None))
    if spec.head is not None and spec.head.chain != "clipped":  # MAR's DDPM chain from step 999
        twin = twin.replace(head=dataclasses.replace(spec.head, chain="clipped"))
    return None if twin.to_dict() == spec.to_dict() else twin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--emigm", default=None, help="a continuous-token model folder for the mar and emigm presets")
    p.add_argument("--nfe", default="8,16", help="NFE budgets")
    p.add_argument("--noise-seeds", default="1,2,3")
    p.add_argument("--doc", default=None)
    a = p.parse_args()
    bench = Bench(a)
    budgets = [int(b) for b in a.nfe.split(",")]
    meters: dict[str, NFEMeter] = {}
    rows: list[dict[str, Any]] = []
    same: list[str] = []
    pairs: list[tuple[str, int, SamplerSpec, SamplerSpec, str]] = []
    for name in preset_names():
        model = a.emigm if name in CONTINUOUS else a.model
        if model is None:
            continue
        meter = meters.setdefault(model, NFEMeter(bench.model_for(model)))
        preset = SamplerSpec.preset(name)
        twin = paper_twin(preset)
        if twin is None:
            same.append(name)
            continue
        for budget in budgets:
            try:
                fitted, fitted_twin = meter.fit(preset, budget), meter.fit(twin, budget)
            except MaskgenError as e:
                print(f"{name} at NFE {budget}: {e}", file=sys.stderr)
                continue
            if fitted is not None and fitted_twin is not None:
                pairs.append((name, budget, fitted, fitted_twin, model))
    for name, budget, spec, twin, model in pairs:
        for kind, s in (("code", spec), ("paper twin", twin)):
            row = bench.run(f"{name} {kind}", {"budget": budget, "setting": describe(s)}, s, model=model)
            rows.append({**row, "preset": name, "kind": kind, "steps": s.steps})
    seeds = [int(s) for s in a.noise_seeds.split(",") if s]
    noise: dict[str, list[float]] = {}
    discrete = [pr for pr in pairs if pr[0] not in CONTINUOUS and pr[1] == max(budgets)]
    if discrete and seeds:
        name, budget, spec, twin, model = discrete[0]
        for label, s, base in ((f"{name} code", spec, "code"), (f"{name} paper twin", twin, "paper twin")):
            first = next(r["fd"] for r in rows if r["preset"] == name and r["budget"] == budget and r["kind"] == base)
            noise[label] = [first] + [bench.run(label, {"budget": budget, "seed": sd}, s, model=model, seed=sd)["fd"] for sd in seeds]
    sd = statistics.mean(statistics.stdev(v) for v in noise.values()) if noise else float("nan")
    page = render(a, bench, rows, noise, sd, same)
    if a.doc:
        Path(a.doc).write_text(page)
    print(page)


def render(a, bench: Bench, rows: list[dict[str, Any]], noise: dict[str, list[float]], sd: float, same: list[str]) -> str:
    argv = " ".join(shlex.quote(x) for x in sys.argv[1:])
    out = [
        "# Presets against their paper twins",
        "",
        "Generated by (do not edit by hand):",
        "",
        f"```bash\npython benchmarks/presets.py {argv}\n```",
        "",
        bench.header() + ". A preset is the authors' code's sampler (docs/presets.md); its paper twin is the same spec with every code-only piece put back to maskgen's default (`benchmarks/presets.py`), at the same NFE budget. The continuous presets run on the continuous reference model.",
        "",
    ]
    if same:
        out += [f"No twin (the preset is maskgen's default sampler): {', '.join(same)}.", ""]
    if noise:
        spread = "; ".join(f"{k}: FD {', '.join(f'{v:.2f}' for v in vs)}" for k, vs in noise.items())
        out += [f"Seed noise ({spread}): pooled sd {sd:.3f}, threshold 2 sd = {2 * sd:.3f}.", ""]
    out += [markdown(rows, ["preset", "kind", "budget", "steps", "setting"]), "", "## Verdicts", "",
            "Rule, fixed before the run: a preset and its paper twin differ only when their FDs are more than 2 pooled seed sd apart.", ""]
    for r in rows:
        if r["kind"] != "code":
            continue
        twin = next(t for t in rows if t["preset"] == r["preset"] and t["budget"] == r["budget"] and t["kind"] == "paper twin")
        d = twin["fd"] - r["fd"]
        verdict = "tie" if not abs(d) > 2 * sd else ("the code's sampler is better" if d > 0 else "the paper twin is better")
        out.append(f"- {r['preset']} at NFE budget {r['budget']}: code {r['fd']:.2f} (NFE {r['nfe']:g}) vs paper twin {twin['fd']:.2f} (NFE {twin['nfe']:g}): {verdict} (difference {d:+.2f}).")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
