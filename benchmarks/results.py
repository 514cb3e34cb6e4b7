"""docs/results.md from one command: the papers' comparisons on the reference models.

Sections (``--sections``, in this order):

- ``noise``: the headline row (self-guidance, L_aux, temperature 25) at three seeds; its
  standard deviation is the noise every verdict compares a difference with;
- ``guidance``: 000 Table 2 / Fig. 4, MaskGIT, CFG, blur, SAG and self-guidance (L_mask,
  L_aux) over a temperature sweep at T = 18, with the FD-vs-score plot;
- ``critic``: 004 Table 1 / Sec. 4.3, Token-Critic against MaskGIT at equal NFE, and
  critic refinement of the MaskGIT samples;
- ``sweeps``: 000 Fig. 6, self-guidance against guidance scale, temperature and steps T;
- ``emigm``: 002 Fig. 3a/3c, ancestral sampling with linear, cosine and exp schedules at 8,
  16 and 32 steps, and CFG with and without the time interval;
- ``di``: 003 Fig. 2/3, the flow sampler with and without argmax on the last step, and the
  explicit- against the implicit-timestep model (trained with ``configs/di-*-fmnist.yaml``);
- ``weighting``: 002 Fig. 2b / 003 Sec. 4, w(t) = 1 against the ELBO weight at the linear and
  cosine training schedules (``--weighting-models``, four generators of the IMT recipe);
- ``causes``: the experiments behind the two claims that disagreed (000 L_aux vs L_mask: seeds
  and guidance scale; 002 Fig. 3a: a generator trained with the exp schedule, ``--exp-model``);
- ``cnoise``, ``mae``, ``head``, ``ccfg``, ``versus``: eMIGM's continuous half (002 Fig. 2c, 3b,
  3c/8a, continuous against discrete) on the continuous models of ``--continuous MAE,SINGLE``
  (``benchmarks/continuous_sections.py``); they count differences against their own noise row.
- ``jnoise``, ``table5``: joint image+segmentation models (003 Sec. 3.4, Table 5) of ``--joint ETM,ITM``
  (``benchmarks/joint_sections.py``), judged against their own noise row.

Every setting is fixed here before a run; nothing is tuned on the evaluation seeds. Rows
are cached in ``--out`` (a killed run resumes; shared rows are sampled once, and several
processes with different ``--sections`` and one ``--out`` fill the cache side by side). Plots
need matplotlib (``pip install -e '.[plots]'``).

    python benchmarks/results.py --model src/maskgen/reference --ref src/maskgen/reference/classifier/ref-stats.npz \\
        --num 500 --threads 1 --di runs/ref/di-etm,runs/ref/di-imt --weighting-models linear-one=runs/ref/di-imt,linear-elbo=runs/ref/w-linear-elbo,cosine-one=runs/ref/w-cosine-one,cosine-elbo=runs/ref/w-cosine-elbo \\
        --exp-model runs/ref/w-exp-one --out runs/results --doc docs/results.md

The generators behind ``--di``, ``--weighting-models`` and ``--exp-model`` are one command each
(the IMT recipe with the schedule and weighting changed on the command line):

    maskgen train --config configs/di-etm-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/di-etm
    maskgen train --config configs/di-imt-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/di-imt
    maskgen train --config configs/di-imt-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/w-linear-elbo --weighting elbo
    maskgen train --config configs/di-imt-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/w-cosine-one --schedule cosine
    maskgen train --config configs/di-imt-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/w-cosine-elbo --schedule cosine --weighting elbo
    maskgen train --config configs/di-imt-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/w-exp-one --schedule exp

The other sections' models and the command that writes their page are in the docstrings of
``continuous_sections.py`` (docs/results-continuous.md), ``joint_sections.py``
(docs/results-joint.md) and ``inpaint_sections.py`` (docs/results-inpainting.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import claims
import continuous_sections
import joint_sections
import inpaint_sections
from continuous_sections import CONTINUOUS_SECTIONS
from joint_sections import JOINT_SECTIONS
from maskgen.errors import MaskgenError
from comparison import Bench, add_common_args, markdown, plot_fd_vs_nfe, plot_fd_vs_score

SECTIONS = ("noise", "guidance", "critic", "sweeps", "emigm", "di", "weighting", "causes", *CONTINUOUS_SECTIONS, *JOINT_SECTIONS, *inpaint_sections.INPAINT_SECTIONS)
WEIGHTING_MODELS = ("linear-one", "linear-elbo", "cosine-one", "cosine-elbo")
TEMPERATURES = (1.0, 4.5, 25.0)  # MaskGIT's default and 000's, plus plain Gumbel
T = 18  # 000 and 004 sample ImageNet with T = 18


@dataclass
class Section:
    title: str
    about: str
    rows: list[dict] = field(default_factory=list)
    claims: list[claims.Claim] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    continuous: bool = False  # judged against the continuous noise row (``cnoise``)
    joint: bool = False  # a joint image+segmentation section (``joint_sections.py``, its own noise and setup text)

    def lookup(self) -> claims.Rows:
        return {(r["method"], r["setting"]): r for r in self.rows}


def confidence(temp: float, steps: int = T, **kw) -> dict:
    return dict(fill="confidence", annealing="compound", steps=steps, choice_temperature=temp, **kw)


class Results:
    """Runs the sections on one ``Bench`` and writes their tables, plots and verdicts."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.bench = args, Bench(args)
        model = Path(args.model)
        self.guided = {
            "maskgit": {},
            "cfg": {"cfg": 2.0},
            "blur": {"guidance": "blur", "scale": 1.0},
            "sag": {"guidance": "sag", "scale": 1.0},
            "sg-lmask": {"guidance": "self", "scale": 1.0, "sg_module": str(model / "self-guidance-lmask")},
            "sg-laux": {"guidance": "self", "scale": 1.0, "sg_module": str(model / "self-guidance")},
        }
        self.critic_dir = str(model / "critic")
        self.noise = claims.Noise(0.0, 0.0)
        self.cnoise = claims.Noise(0.0, 0.0)
        self.mae, self.single = (args.continuous or ",").split(",")

    def row(self, section: Section, method: str, setting: str, spec: dict, **kw) -> dict:
        r = self.bench.run(method, {"setting": setting}, spec, **kw)
        section.rows.append(r)
        return r

    def noise_section(self) -> Section:
        s = Section("Sampling noise: one row at three seeds", "Self-guidance (L_aux), temperature 25, T = 18, seeds 0, 1, 2.")
        for seed in (0, 1, 2):
            self.row(s, "sg-laux", f"seed {seed}", confidence(25.0, **self.guided["sg-laux"]), seed=seed)
        fd, sc = [r["fd"] for r in s.rows], [r["score"] for r in s.rows]
        self.noise = claims.Noise(statistics.stdev(fd), statistics.stdev(sc))
        s.about += (f" Standard deviation over the seeds: FD {self.noise.fd:.3f}, score {self.noise.score:.3f}; the verdicts "
                    "below count a difference as real only beyond twice these.")
        return s

    def guidance_section(self) -> Section:
        s = Section(
            "000 Table 2 / Fig. 4: guidance methods over a temperature sweep",
            f"Confidence fill at T = {T}, compound Gumbel annealing at the listed choice temperature; scales fixed in advance "
            "(CFG 2, blur 1, SAG 1, self-guidance 1).",
            claims=[claims.headline, claims.aux_vs_mask, claims.blur_sag_marginal],
        )
        for name, extra in self.guided.items():
            for temp in TEMPERATURES:
                self.row(s, name, f"gumbel {temp:g}", confidence(temp, **extra))
        s.plots.append(self.plot(s, "fd_vs_score.png", f"T={T}, {self.args.num} samples"))
        return s

    def critic_section(self) -> Section:
        s = Section(
            "004 Table 1 / Sec. 4.3: Token-Critic at equal NFE, and refinement",
            f"Token-Critic sampling (004 Alg. 2) at T = {T} with selection noise K and token temperature 1 (NFE = T generator "
            f"+ T-1 critic passes) against MaskGIT at 2T = {2 * T} steps; refinement re-samples the 60% lowest-scored tokens "
            "of the MaskGIT T = 18 samples, then follows 0.6 cosine over 9 steps (its NFE and time include the base samples').",
            claims=[claims.critic_equal_nfe, claims.refinement],
        )
        for temp in TEMPERATURES:
            self.row(s, "maskgit", f"gumbel {temp:g}", confidence(temp))
        for temp in TEMPERATURES:
            self.row(s, "maskgit-2t", f"gumbel {temp:g}", confidence(temp, steps=2 * T))
        for k in (0.5, 1.0, 2.0):
            self.row(s, "critic", f"K {k:g}", dict(fill="critic", steps=T, critic=self.critic_dir, critic_noise=k))
        bases = [r for r in s.rows if r["method"] == "maskgit"]
        for base in bases:
            spec = dict(steps=9, fraction=0.6, critic=self.critic_dir)
            self.row(s, "refine", f"maskgit {base['setting']}", spec, base=base)
        return s

    def sweeps_section(self) -> list[Section]:
        sg = self.guided["sg-laux"]
        scale = Section("000 Fig. 6a: guidance scale", f"Self-guidance (L_aux), T = {T}, temperature 25; scale 0 is MaskGIT.", claims=[claims.scale_sweep])
        self.row(scale, "scale", "scale 0", confidence(25.0))
        for v in (0.5, 1.0, 2.0, 3.0):
            self.row(scale, "scale", f"scale {v:g}", confidence(25.0, **{**sg, "scale": v}))
        temp = Section("000 Fig. 6b: temperature", f"Self-guidance (L_aux, scale 1) and MaskGIT, T = {T}.", claims=[claims.temperature_sweep])
        for name in ("sg-laux", "maskgit"):
            for v in (1.0, 4.5, 10.0, 25.0, 50.0):
                self.row(temp, name, f"gumbel {v:g}", confidence(v, **self.guided[name]))
        steps = Section(
            "000 Fig. 6c: sampling steps",
            "Self-guidance (L_aux, scale 1) and MaskGIT at T = 5 to 18, at temperatures 4.5 and 25 (both reported; no "
            "per-T choice on these seeds).",
            claims=[claims.steps_sweep],
        )
        for name in ("sg-laux", "maskgit"):
            for t in (5, 8, 12, 18):
                for v in (4.5, 25.0):
                    self.row(steps, name, f"T {t}, gumbel {v:g}", confidence(v, steps=t, **self.guided[name]))
        steps.plots.append(self.plot_nfe(steps, "fd_vs_steps.png", lambda r: f"{r['method']} {r['setting'].split(', ')[1]}"))
        return [scale, temp, steps]

    def emigm_section(self) -> list[Section]:
        sched = Section(
            "002 Fig. 3a: sampling schedules",
            "Ancestral sampling (002 Eq. 6) at token temperature 1 on the reference generator, with the linear, cosine and "
            "exp schedules at 8, 16 and 32 steps.",
            claims=[claims.schedules],
        )
        for name in ("exp", "cosine", "linear"):
            for k in (8, 16, 32):
                self.row(sched, name, f"{k} steps", dict(fill="ancestral", steps=k, schedule=name))
        sched.plots.append(self.plot_nfe(sched, "fd_vs_schedule.png", lambda r: r["method"]))
        cfg = Section(
            "002 Fig. 3c: CFG time interval",
            "Ancestral sampling, exp schedule, CFG 2 at every step against CFG 2 only when the step ends at s in (0.1, 0.3] "
            "(002 Sec. 5.3's best interval); other steps are conditional only.",
            claims=[claims.cfg_interval],
        )
        for k in (8, 16):
            self.row(cfg, "cfg", f"{k} steps", dict(fill="ancestral", steps=k, schedule="exp", cfg=2.0))
            self.row(cfg, "cfg interval", f"{k} steps", dict(fill="ancestral", steps=k, schedule="exp", cfg=2.0, cfg_interval=(0.1, 0.3)))
        return [sched, cfg]

    def di_section(self) -> list[Section]:
        etm, imt = self.args.di.split(",")
        flow = dict(fill="flow", schedule="linear")
        argmax = Section(
            "003 Fig. 2: argmax on the last step",
            f"Flow (Euler) sampler on the explicit-timestep model `{etm}` (linear scheduler, as trained), token temperature 1, "
            "the last step drawn from the distribution or taken as its argmax.",
            claims=[claims.argmax_last],
        )
        for k in (4, 8, 16):
            self.row(argmax, "sampled last", f"{k} steps", dict(flow, steps=k), model=etm)
            self.row(argmax, "argmax last", f"{k} steps", dict(flow, steps=k, argmax_last=True), model=etm)
        timestep = Section(
            "003 Fig. 3: explicit against implicit timestep",
            f"Two generators trained identically except for the timestep input (`{etm}`, `{imt}`), flow sampler with argmax "
            "on the last step, linear scheduler.",
            claims=[claims.etm_vs_imt],
        )
        for k in (4, 8, 16, 32):
            for name, folder in (("ETM", etm), ("IMT", imt)):
                self.row(timestep, name, f"{k} steps", dict(flow, steps=k, argmax_last=True), model=folder)
        argmax.plots.append(self.plot_nfe(argmax, "fd_vs_nfe_argmax.png", lambda r: r["method"]))
        timestep.plots.append(self.plot_nfe(timestep, "fd_vs_nfe_timestep.png", lambda r: r["method"]))
        return [argmax, timestep]

    def weighting_section(self) -> Section:
        models = dict(item.split("=", 1) for item in self.args.weighting_models.split(","))
        s = Section(
            "002 Fig. 2b / 003 Sec. 4: loss weighting w(t) = 1 against the ELBO weight",
            "Four generators of the IMT recipe (`configs/di-imt-fmnist.yaml`, Bernoulli masking, implicit timestep), trained "
            "with the linear or cosine schedule and w(t) = 1 (the masked cross-entropy summed, / N) or gamma'/gamma; each "
            "sampled with the same two samplers: ancestral, 16 steps, cosine sampling schedule; MaskGIT confidence, 8 steps, "
            "cosine, Gumbel temperature 4.5.",
            claims=[claims.weighting],
        )
        for name in WEIGHTING_MODELS:
            label = name.replace("-", " ")
            self.row(s, label, "ancestral 16", dict(fill="ancestral", steps=16, schedule="cosine"), model=models[name])
            self.row(s, label, "maskgit 8", dict(fill="confidence", steps=8, schedule="cosine", choice_temperature=4.5), model=models[name])
        return s

    def causes_section(self) -> list[Section]:
        sg = Section(
            "Cause: 000 Table 2, L_aux against L_mask",
            f"Self-guidance with each module at T = {T}, temperature 25 (compound): three seeds at scale 1, then scales "
            "0.5, 1, 2 at seed 0.",
            claims=[claims.aux_vs_mask_cause],
        )
        for name in ("sg-laux", "sg-lmask"):
            for seed in (0, 1, 2):
                self.row(sg, name, f"seed {seed}", confidence(25.0, **self.guided[name]), seed=seed)
            for v in (0.5, 1.0, 2.0):
                self.row(sg, name, f"scale {v:g}", confidence(25.0, **{**self.guided[name], "scale": v}))
        sched = Section(
            "Cause: 002 Fig. 3a, sampling schedules",
            f"Ancestral sampling at token temperature 1 on a generator trained as eMIGM trains (exp schedule, w(t) = 1; "
            f"`{self.args.exp_model}`), with the exp, cosine and linear sampling schedules at 8 and 16 steps.",
            claims=[claims.schedules_cause],
        )
        for name in ("exp", "cosine", "linear"):
            for k in (8, 16):
                self.row(sched, f"{name} (exp-trained)", f"{k} steps", dict(fill="ancestral", steps=k, schedule=name), model=self.args.exp_model)
        return [sg, sched]

    def plot_folder(self) -> Path:
        return Path(self.args.doc).with_suffix("") if self.args.doc else Path(self.args.out or ".")

    def plot(self, s: Section, name: str, title: str) -> str:
        return str(plot_fd_vs_score(s.rows, self.plot_folder() / name, "method", "setting", title))

    def plot_nfe(self, s: Section, name: str, series) -> str:
        return str(plot_fd_vs_nfe(s.rows, self.plot_folder() / name, series, f"{s.title.split(':')[0]}, {self.args.num} samples"))

    def run(self, chosen: list[str]) -> list[Section]:
        out: list[Section] = []
        for name in chosen:
            if name in JOINT_SECTIONS:
                made = getattr(joint_sections, f"{name}_section")(self, lambda *a, **k: Section(*a, **k, joint=True))
            elif name in CONTINUOUS_SECTIONS:
                made = getattr(continuous_sections, f"{name}_section")(self, lambda *a, **k: Section(*a, **k, continuous=True))
            elif name in inpaint_sections.INPAINT_SECTIONS:  # judged against their own noise rows
                made = getattr(inpaint_sections, f"{name}_section")(self, Section)
            else:
                made = getattr(self, f"{name}_section")()
            out.extend(made if isinstance(made, list) else [made])
        return out


def render(sections: list[Section], results: Results, command: str) -> str:
    """The whole docs/results.md: setup, then per section its table, plot and verdicts."""
    b, doc = results.bench, Path(results.args.doc) if results.args.doc else None
    lines = [
        "# Results of the joint image+segmentation models" if sections and all(s.joint for s in sections) else "# Results on the reference models",
        "",
        "Generated by (do not edit by hand):",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    if sections and sections[0].title.startswith("Sampling noise"):  # the main page opens with the frontier
        lines += ["Every sampler on one FD-vs-NFE plot (docs/results-frontier.md, `benchmarks/frontier.py`):", "",
                  "![the frontier](results-frontier/fd_vs_nfe.png)", ""]
    if sections and all(s.joint for s in sections):
        lines += joint_sections.intro(results)
    else:
        lines += [
        f"{b.header()}. FD-clf is the Frechet distance in the dataset classifier's features (lower is better), score the "
        "classifier score (the IS formula over its 10 classes, higher is better); precision and recall use k = 3 in the same "
        "features. Seconds per image are wall time on the machine that ran the command, for the row's own run: rows are "
        "cached and may come from runs made at different times and machine load, so compare them only within a section. The papers' numbers quoted in the "
        "verdicts are ImageNet FID/IS; here only the direction and size of each effect can be compared.",
        "",
        "Models: the reference generator, its self-guidance modules and critic in `--model` (recipes "
        "`configs/maskgit-fmnist.yaml`, `sg-fmnist.yaml`, `sg-lmask-fmnist.yaml`, `critic-fmnist.yaml`; the package ships "
        "bf16 copies of them), and for 003 the two generators of `configs/di-etm-fmnist.yaml` and "
        "`configs/di-imt-fmnist.yaml`, for the weighting ablation and the schedule experiment the IMT recipe with its schedule "
        "and weighting changed (commands in `benchmarks/results.py`); all trained on the 60k Fashion-MNIST training images on "
        "2 CPU cores. The reference generator was trained with the per-image mean of the masked cross-entropy "
        "(`--weighting per-image`); every generator trained after the w(t) = 1 fix uses the papers' sum (`--weighting one`).",
        "",
        ]
    if any(s.continuous for s in sections):
        lines += [
            f"Continuous models (eMIGM, 002): a KL tokenizer (`configs/kl-tokenizer-fmnist.yaml`, 8x8 latents of dimension 8) "
            f"and two generators of `configs/emigm-continuous-fmnist.yaml` on its latents, the MAE `{results.mae}` and one "
            f"transformer `{results.single}` (commands in `benchmarks/results.py`). Their images are scored with the same "
            "classifier and statistics as the discrete rows. NFE counts transformer passes; head passes (per image, "
            "a CFG head call counting 2) are the diffusion head's.",
            "",
        ]
    if not results.args.inception_ref and not all(s.joint for s in sections):
        lines += [
            "Inception FID on 10,000 samples is not in these tables (its speed on a machine: "
            "`python benchmarks/inception_speed.py`). For an FID column on the same samples add "
            "`--inception-ref STATS` (from `maskgen ref-stats --network inception`) and `--num 10000` (`--device cuda` on a GPU).",
            "",
        ]
    for s in sections:
        lines += [f"## {s.title}", "", s.about, "", markdown(s.rows, ["method", "setting"]), ""]
        for p in s.plots:
            rel = Path(p).relative_to(doc.parent) if doc else Path(p)
            lines += [f"![{Path(p).stem.replace('_', ' ')}]({rel.as_posix()})", ""]
        for claim in s.claims:
            lines += [f"- {claim(s.lookup(), results.cnoise if s.continuous else results.noise)}"]
        if s.claims:
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--di", default=None, help="ETM,IMT generator folders for the 003 section")
    p.add_argument("--weighting-models", default=None, help="NAME=DIR for each of " + ", ".join(WEIGHTING_MODELS))
    p.add_argument("--exp-model", default=None, help="generator trained with the exp schedule and w = 1 (causes section)")
    p.add_argument("--continuous", default=None, help="MAE,SINGLE continuous generator folders for the continuous sections")
    p.add_argument("--joint", default=None, help="ETM,ITM joint image+segmentation model folders for the joint sections")
    p.add_argument("--coupling-models", default=None, help="UNCOUPLED,COUPLED generator folders for the inpainting sections (more pairs: replicates)")
    p.add_argument("--sections", default=",".join(SECTIONS[:8]), help="default: the main page's (docs/results.md); the others write their own pages")
    p.add_argument("--doc", default=None, help="write the markdown report here (plots go to a folder of the same name)")
    args = p.parse_args()
    chosen = [x for x in args.sections.split(",") if x]
    for x in chosen:
        if x not in SECTIONS:
            sys.exit(f"unknown section {x!r}; choose from {', '.join(SECTIONS)}")
    if "di" in chosen and (not args.di or len(args.di.split(",")) != 2):
        sys.exit("the di section needs --di ETM_FOLDER,IMT_FOLDER")
    if "weighting" in chosen:
        given = dict(item.split("=", 1) for item in (args.weighting_models or "").split(",") if "=" in item)
        if sorted(given) != sorted(WEIGHTING_MODELS):
            sys.exit("the weighting section needs --weighting-models " + ",".join(f"{m}=DIR" for m in WEIGHTING_MODELS))
    if "causes" in chosen and not args.exp_model:
        sys.exit("the causes section needs --exp-model DIR")
    if set(chosen) & set(CONTINUOUS_SECTIONS) and (not args.continuous or len(args.continuous.split(",")) != 2):
        sys.exit("the continuous sections need --continuous MAE_FOLDER,SINGLE_FOLDER")
    if set(chosen) & set(JOINT_SECTIONS) and (not args.joint or len(args.joint.split(",")) != 2):
        sys.exit("the joint sections need --joint ETM_FOLDER,ITM_FOLDER")
    if set(inpaint_sections.INPAINT_SECTIONS) & set(chosen) and (not args.coupling_models or len(args.coupling_models.split(",")) % 2):
        sys.exit("the inpainting sections need --coupling-models UNCOUPLED_FOLDER,COUPLED_FOLDER[,UNCOUPLED_2,COUPLED_2 ...]")
    discrete = [x for x in chosen if x not in (*CONTINUOUS_SECTIONS, *JOINT_SECTIONS, *inpaint_sections.INPAINT_SECTIONS, "noise")]
    continuous = [x for x in chosen if x in CONTINUOUS_SECTIONS and x != "cnoise"]
    if (discrete and "noise" not in chosen) or (continuous and "cnoise" not in chosen):
        print("note: without its noise section (noise, cnoise) a verdict treats every difference as real", file=sys.stderr)
    try:
        results = Results(args)
        sections = results.run(chosen)
    except MaskgenError as e:  # bad path, corrupt checkpoint, unknown option: one line, no traceback
        sys.exit(f"error: {e}")
    command = "python benchmarks/results.py " + " ".join(sys.argv[1:])
    text = render(sections, results, command)
    print(text)
    if args.doc:
        Path(args.doc).write_text(text + "\n")
    results.bench.save("results", text)


if __name__ == "__main__":
    main()
