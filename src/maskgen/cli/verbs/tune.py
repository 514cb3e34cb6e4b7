"""``maskgen tune``: search sampler settings for the best FD at each NFE budget (``maskgen.tuning``)."""

from __future__ import annotations

import argparse

NAME = "tune"
HELP = "Search sampler settings for the lowest FD at each NFE budget; writes a table, a plot and a spec file per budget."
REQUIRED: tuple[str, ...] = ("out",)
OUT = "folder"
KEEPS = ("trials.jsonl", "tune.json")  # what a rerun continues in its own --out (its trial log), refusing any other content


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the shipped reference model)")
    p.add_argument("--ref", default=None, help="reference statistics (default: the shipped classifier's, FD-clf)")
    p.add_argument("--nfe", default="4,8,16", help="comma-separated NFE budgets (network passes per image)")
    p.add_argument("--out", default=None, help="folder for trials.jsonl, tune.md, fd_vs_nfe.png, spec-nfe<B>.json (a rerun resumes)")
    p.add_argument("--trials", type=int, default=20, help="random proposals per budget")
    p.add_argument("--refine", type=int, default=0, help="local-search trials per budget after the random ones, each a neighbour of the best so far")
    p.add_argument("--num", type=int, default=200, help="samples per search trial")
    p.add_argument("--rescore-num", type=int, default=500, help="samples per rescoring run")
    p.add_argument("--top", type=int, default=3, help="best search trials per budget to rescore")
    p.add_argument("--seeds", default="1,2,3", help="sampling seeds of the rescoring (keep them apart from --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the proposals and of the search's samples")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu")


def check_bounds(args: argparse.Namespace) -> None:
    """No budget past what a candidate can spend at one step per token (``max_step_passes()``
    network passes each) on the model: work without bound is refused before it starts."""
    from ...errors import MaskgenError
    from ...tuning import max_step_passes, parse_budgets
    from ..checks import model_tokens

    n = model_tokens(args.model)
    if n is None:
        return
    where = f"the model in {args.model}" if args.model else "the shipped model"
    passes = max_step_passes()
    most = n * passes
    over = [b for b in parse_budgets(args.nfe) if b > most]
    if over:
        raise MaskgenError(f"--nfe {over[0]}: no sampler reaches that budget on {where}: at most {n} steps (one per token) of at most {passes} network passes each, NFE {most}; give budgets up to {most}")


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from ...checkpoint import atomic_write, file_sha256
    from ...devices import resolve_device
    from ...errors import MaskgenError
    from ...pipelines import MaskGen
    from ...shipped import reference_dir
    from ...tuning import fd_scorer, parse_budgets, parse_seeds, plot, table, tune, write_specs
    from ...validate import integer
    from ..sampling import MAX_SAMPLES

    budgets, seeds = parse_budgets(args.nfe), parse_seeds(args.seeds)
    for name, value in (("--batch-size", args.batch_size), ("--trials", args.trials), ("--num", args.num), ("--rescore-num", args.rescore_num), ("--top", args.top)):
        integer(name, value, 1)  # every count before the model loads or anything is written
    integer("--refine", args.refine, 0)
    for name, value in (("--num", args.num), ("--rescore-num", args.rescore_num)):
        if value > MAX_SAMPLES:
            raise MaskgenError(f"{name} {value:,}: more samples than one run draws (at most {MAX_SAMPLES:,} per trial)")
    model_dir = args.model or str(reference_dir())
    ref = args.ref or str(reference_dir() / "classifier" / "ref-stats.npz")
    if not Path(ref).is_file():
        raise MaskgenError(f"reference statistics do not exist: {ref} (make them with `maskgen ref-stats`)")
    device = resolve_device(args.device)
    model = MaskGen.load(model_dir, device=device)
    score = fd_scorer(model, ref, args.batch_size, device)
    question = {"ref": str(Path(ref).resolve()), "ref_sha256": file_sha256(ref)}
    results = tune(model, score, args.out, budgets, args.trials, args.num, args.rescore_num, seeds, args.seed, args.top, refine=args.refine, question=question)
    settings = {"model": model_dir, "ref": ref, "trials": args.trials, "refine": args.refine, "num": args.num, "seed": args.seed,
                "top": args.top, "rescore_num": args.rescore_num, "seeds": seeds}
    specs = write_specs(results, args.out, model_dir, settings, model.generator.sha256)
    text = table(results, settings)
    atomic_write(Path(args.out) / "tune.md", lambda tmp: Path(tmp).write_text(text))  # a reader never sees half a table
    figure = plot(results, Path(args.out) / "fd_vs_nfe.png")
    print(text)
    print(f"spec files: {', '.join(map(str, specs))}; replay one with `maskgen sample --spec FILE --out DIR`")
    if figure is None:
        print("no plot: matplotlib is not installed (pip install 'maskgen[plots]')")
