"""docs/results-frontier.md from one command: every sampler of maskgen on FD against NFE and
against seconds per image, on the reference models, with the seed noise.

Each method is one sampler spec with its settings fixed here (the papers' values, or the best
of docs/results.md where a paper's default is a sweep), fitted to each NFE budget by
``maskgen.tuning.NFEMeter`` (the most steps whose measured NFE fits; a CFG step counts 2).
"tuned" is the winner of ``maskgen tune`` at each budget (``--tuned DIR``, its spec files),
scored here on seeds the search never saw. Every point is seed ``--seed``; the noise rows
rerun the tuned sampler at NFE 8 and the best paper method at NFE 18 at ``--noise-seeds``, and
their pooled standard deviation is the error bar and the threshold of every verdict. Rows are
cached in ``--out`` (``comparison.Bench``), so a killed run resumes. Verdicts:
``frontier_claims.py``.

    maskgen tune --model src/maskgen/reference --out runs/tune --nfe 4,8,18 --trials 12 --num 200 \\
        --rescore-num 200 --top 2 --seeds 11,12 --seed 10
    python benchmarks/frontier.py --model src/maskgen/reference --ref src/maskgen/reference/classifier/ref-stats.npz \\
        --num 250 --threads 1 --tuned runs/tune --emigm src/maskgen/reference/emigm --nfe 8,18,4 --out runs/frontier \\
        --doc docs/results-frontier.md --tune-command "tune ..."

(250 samples per point rather than docs/results.md's 500: on a 2-core machine shared with other
jobs, 500 would not have fit the hour this run was given.)
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

import frontier_claims
from comparison import Bench, add_common_args, markdown
from maskgen.errors import MaskgenError
from maskgen.sampling.spec import SamplerSpec
from maskgen.tuning import NFEMeter, describe

GUMBEL = 25.0  # MaskGIT's best choice temperature at T = 18 in docs/results.md (000 Table 2 section)
MASKGIT_TEMPS = (4.5, 25.0)  # MaskGIT's default and 000's; "maskgit" takes the better per budget
REFINE_FRACTION = 0.6  # 004 Sec. 4.3
ONE_STEP = frontier_claims.ONE_STEP


def confidence(**kw: Any) -> dict[str, Any]:
    return dict(fill="confidence", annealing="compound", choice_temperature=GUMBEL, **kw)


def methods(model: Path) -> dict[str, dict[str, Any]]:
    """Every single-paper sampler, as flat ``maskgen sample`` options without steps."""
    return {
        "halton": dict(fill="halton"),
        "ancestral": dict(fill="ancestral", schedule="exp"),  # eMIGM's schedule; docs/results.md 002 Fig. 3a
        "flow argmax-last": dict(fill="flow", schedule="linear", argmax_last=True),
        "cfg": confidence(cfg=2.0),
        "cfg interval": dict(fill="ancestral", schedule="exp", cfg=2.0, cfg_interval=(0.1, 0.3)),  # 002 Sec. 5.3
        "blur": confidence(guidance="blur", scale=1.0),
        "sag": confidence(guidance="sag", scale=1.0),
        "self-guidance": confidence(guidance="self", scale=1.0, sg_module=str(model / "self-guidance")),
        "self-guidance L_mask": confidence(guidance="self", scale=1.0, sg_module=str(model / "self-guidance-lmask")),
        "token-critic": dict(fill="critic", critic=str(model / "critic"), critic_noise=1.0),
        # Di[M]O's student (MODEL/one-step): NFE 1 alone, then + teacher confidence steps (NFE 1 + T - 1)
        **({ONE_STEP: dict(fill="one-step")} if (model / "one-step" / "one-step.json").is_file() else {}),
    }


class Frontier:
    def __init__(self, args: argparse.Namespace):
        self.args, self.bench = args, Bench(args)
        self.budgets = [int(b) for b in args.nfe.split(",")]
        self.rows: list[dict[str, Any]] = []  # one per (series, budget), seed --seed
        self.noise_rows: list[dict[str, Any]] = []
        self.meters: dict[str, NFEMeter] = {}
        self.floor_fds: list[float] = []

    def fitted(self, options: dict[str, Any] | SamplerSpec, budget: int, model: str | None = None) -> SamplerSpec | None:
        model = model or self.args.model
        meter = self.meters.setdefault(model, NFEMeter(self.bench.model_for(model)))
        spec = options if isinstance(options, SamplerSpec) else SamplerSpec.from_options(**options, steps=1)
        return meter.fit(spec, budget)

    def point(self, series: str, budget: int, spec: SamplerSpec, model: str | None = None, seed: int | None = None, **kw) -> dict:
        row = self.bench.run(series, {"budget": budget, "setting": describe(spec)}, spec, model=model, seed=seed, **kw)
        return row

    def run(self) -> None:
        a = self.args
        model = Path(a.model)
        for budget in self.budgets:
            best = None
            for temp in MASKGIT_TEMPS:
                spec = self.fitted(dict(fill="confidence", annealing="compound", choice_temperature=temp), budget)
                r = self.point("maskgit", budget, spec)
                best = r if best is None or r["fd"] < best["fd"] else best
            self.rows.append({**best, "series": "maskgit (better temperature)"})
            for name, options in methods(model).items():
                spec = self.fitted(options, budget)
                if spec is not None:
                    self.rows.append({**self.point(name, budget, spec), "series": name})
            refined = self.refinement(budget)
            if refined is not None:
                self.rows.append({**refined, "series": "critic refinement"})
            if a.emigm:
                spec = self.fitted(dict(fill="ancestral", schedule="exp", cfg=3.0), budget, model=a.emigm)
                if spec is not None:
                    self.rows.append({**self.point("emigm (continuous)", budget, spec, model=a.emigm), "series": "emigm (continuous)"})
        for budget in self.budgets:  # last, so a `maskgen tune` still running has time to write its specs
            tuned = self.tuned(budget)
            if tuned is not None:
                self.rows.append({**self.point("tuned", budget, tuned), "series": "tuned"})
        self.noise()
        self.floor_fds = self.floor() if self.args.floor_data else []

    def floor(self) -> list[float]:
        """FD of held-out real images (``--floor-data``, test split), one set per noise seed, each
        class-balanced like the sampled rows (``--num`` / classes per class) and disjoint: where a
        sampler indistinguishable from the data would land at this sample count. Sets drawn
        without regard to class would not do: in a classifier's features, the FD of a few
        hundred images moves with their class counts far more than the rows' seed noise."""
        import numpy as np

        from maskgen.evaluate import dataset_images, evaluate_images

        b, sets = self.bench, len(self.args.noise_seeds.split(","))
        classes = b.model.generator.config.num_classes
        per = self.args.num // classes
        images, labels = dataset_images(self.args.floor_data, "test")
        pools = [np.flatnonzero(labels == c) for c in range(classes)]
        if min(len(p) for p in pools) < per * sets:
            raise MaskgenError(f"{self.args.floor_data} has too few test images of some class for {sets} sets of {per} per class")
        out = []
        for i in range(sets):
            idx = np.concatenate([p[i * per:(i + 1) * per] for p in pools])
            m = evaluate_images(images[idx], labels[idx], b.ref, b.net, device=b.device, progress=False, kid_subsets=10)
            out.append(float(m.get("fd_clf", m.get("fid"))))  # the same key the rows' "fd" comes from
        return out

    def refinement(self, budget: int) -> dict | None:
        """MaskGIT (gumbel 25) then Token-Critic refinement (004 Sec. 4.3): about a sixth of the
        budget's steps refine, the rest sample the base; the row's NFE includes the base's."""
        refiner = _refiner(dict(steps=max(1, budget // 6), fraction=REFINE_FRACTION, critic=str(Path(self.args.model) / "critic")))
        left = budget - self.refine_nfe(refiner)
        base_spec = self.fitted(confidence(), int(left)) if left >= 1 else None
        if base_spec is None:
            return None
        return {**self.refined(budget, base_spec, refiner), "base_spec": base_spec.to_dict()}

    def refined(self, budget: int, base_spec: SamplerSpec, refiner: SamplerSpec, seed: int | None = None) -> dict:
        base = self.point("refine-base", budget, base_spec, seed=seed)
        return self.point("critic refinement", budget, refiner, base=base, seed=seed)

    def refine_nfe(self, refiner: SamplerSpec) -> float:
        """The refiner's own NFE per image, measured on one refined image."""
        mg, labels = self.bench.model, torch.zeros(1, dtype=torch.long)
        _, base = mg.generate(labels, mg.sampler(SamplerSpec(steps=1)), seed=0, batch_size=1, progress=False)
        _, result = mg.generate(labels, mg.sampler(refiner), seed=0, batch_size=1, progress=False, init=base.tokens)
        return result.nfe

    def tuned(self, budget: int) -> SamplerSpec | None:
        if not self.args.tuned:
            return None
        path = Path(self.args.tuned) / f"spec-nfe{budget}.json"
        return SamplerSpec.from_file(path) if path.is_file() else None

    def noise(self) -> None:
        """The noise rows, at every noise seed: tuned at NFE 8, the best paper method at the largest
        budget, and at the smallest budget the one-step student and the best other method."""
        seeds = [int(s) for s in self.args.noise_seeds.split(",")]
        top = max(self.budgets)
        paper = [r for r in self.rows if r["budget"] == top and r["series"] != "tuned"]
        picks = [min(paper, key=lambda r: r["fd"])]
        picks += [r for r in self.rows if r["series"] == "tuned" and r["budget"] == 8]
        low = min(self.budgets)
        student = [r for r in self.rows if r["series"] == ONE_STEP and r["budget"] == low]
        others = [r for r in self.rows if r["series"] not in (ONE_STEP, "tuned") and r["budget"] == low]
        if student and others:
            picks += [student[0], min(others, key=lambda r: r["fd"])]
        for r in picks:
            spec = SamplerSpec.from_dict(r["settings"]["sampler"])
            model = self.args.emigm if r["series"].startswith("emigm") else None
            runs = [r if s == self.args.seed else self.rerun(r, spec, model, s) for s in seeds]
            for s, x in zip(seeds, runs):
                self.noise_rows.append({**x, "series": r["series"], "budget": r["budget"], "seed": s})

    def rerun(self, row: dict, spec: SamplerSpec, model: str | None, seed: int) -> dict:
        if "base_spec" in row:  # a refinement row: its base is sampled again at this seed too
            return self.refined(row["budget"], SamplerSpec.from_dict(row["base_spec"]), spec, seed=seed)
        return self.point(row["method"], row["budget"], spec, model=model, seed=seed)


def _refiner(options: dict[str, Any]) -> SamplerSpec:
    from maskgen.pipeline import MaskGen

    return MaskGen.refiner_spec(**options)


def render(f: Frontier, command: str, plots: list[str]) -> str:
    b, a = f.bench, f.args
    noise = frontier_claims.pooled_noise(f.noise_rows)
    lines = [
        "# The frontier: every sampler against NFE and time",
        "",
        "Generated by (do not edit by hand), after the `maskgen tune` run it reads (`--tuned`):",
        "",
        "```bash",
        ("maskgen " + a.tune_command) if a.tune_command else "(no maskgen tune run given)",
        command,
        "```",
        "",
        f"{b.header()}. Each method's settings are fixed in `benchmarks/frontier.py` before the run; its steps are the "
        "most whose measured NFE fits the budget (a CFG or self-guidance step costs 2 passes, a Token-Critic step 1 "
        "generator + 1 critic pass, a CFG interval only its guided steps), so a point can sit below its budget. "
        "\"tuned\" is the `maskgen tune` winner at that budget, scored here at seeds the search did not use. Seconds per "
        "image are wall time on a 2-core machine shared with other jobs: compare them loosely. eMIGM's NFE counts "
        "transformer passes; its diffusion head adds the head passes in the table. FD is biased upward at small "
        "sample counts, so compare FDs only between rows of the same count.",
        "",
        f"Seed noise: {frontier_claims.noise_text(f.noise_rows, noise)}. Error bars in the plots are ± this standard "
        "deviation (the noise rows' own spread where a point has them).",
        "",
    ]
    if f.floor_fds:
        lines += [f"The floor (dashed in the plots): {a.num} real held-out images (`{a.floor_data}`, test split, as many per class "
                  "as the rows sample) score FD "
                  f"{', '.join(f'{x:.2f}' for x in f.floor_fds)} in {len(f.floor_fds)} disjoint sets (mean "
                  f"{statistics.mean(f.floor_fds):.2f}): FD on {a.num} samples is biased upward by about that much, and a "
                  "sampler indistinguishable from the data would land there.", ""]
    for p in plots:
        lines += [f"![{Path(p).stem.replace('_', ' ')}]({Path(p).relative_to(Path(a.doc).parent).as_posix()})", ""]
    lines += ["## Verdicts", "", "Rule, fixed before the run: a difference counts only beyond twice the pooled seed standard "
              "deviation above; a method \"wins\" a budget when its FD is lowest, and \"beyond the noise\" when the "
              "runner-up is more than that behind.", ""]
    floor = statistics.mean(f.floor_fds) if f.floor_fds else None
    lines += [f"- {v}" for v in frontier_claims.verdicts(f.rows, f.noise_rows, noise, sorted(f.budgets), floor)]
    lines += ["", "## All points", "", markdown(sorted(f.rows, key=lambda r: r["budget"]), ["series", "budget", "setting"]), "",
              "## Noise rows", "", markdown(f.noise_rows, ["series", "budget", "seed"]), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--tuned", default=None, help="folder of a `maskgen tune` run (its spec-nfe<B>.json)")
    p.add_argument("--tune-command", default="", help="the `maskgen tune` arguments that made --tuned, quoted in the doc")
    p.add_argument("--emigm", default=None, help="continuous eMIGM model folder")
    p.add_argument("--nfe", default="4,8,12,18", help="NFE budgets")
    p.add_argument("--noise-seeds", default="0,1,2")
    p.add_argument("--doc", default="docs/results-frontier.md")
    p.add_argument("--floor-data", default="fashion-mnist", help="dataset whose held-out test images give the floor row ('' for none)")
    args = p.parse_args()
    try:
        f = Frontier(args)
        f.run()
    except MaskgenError as e:
        sys.exit(f"error: {e}")
    folder = Path(args.doc).with_suffix("")
    floor = statistics.mean(f.floor_fds) if f.floor_fds else None
    plots = frontier_claims.plots(f.rows, f.noise_rows, frontier_claims.pooled_noise(f.noise_rows), folder, floor)
    command = "python benchmarks/frontier.py " + shlex.join(sys.argv[1:])
    text = render(f, command, [str(x) for x in plots])
    Path(args.doc).write_text(text + "\n")
    print(text)
    f.bench.save("frontier", text, {"floor_fds": f.floor_fds})


if __name__ == "__main__":
    main()
