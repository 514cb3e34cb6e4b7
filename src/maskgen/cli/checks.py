"""What ``maskgen <verb>`` checks before it does any work, so bad input ends in one line on
stderr and nothing is written: the device, the output (writable, not something else, never
inside the installed package), work without bound, and a training run's ``--resume`` against
what its folder records. What each verb writes and continues comes from its module (``OUT``,
``DEFAULT_OUT``, ``KEEPS``, ``objective_config``, ``FROZEN``); the numbers that belong to a config
dataclass (``TrainConfig``, ``GeneratorConfig`` ...) are checked by the dataclass, for the
Python API too.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

from ..checkpoint import file_sha256, load_json
from ..errors import MaskgenError
from ..shipped import PACKAGE, REFERENCE
from ..validate import writable_dir, writable_file
from .options import output_folder, pick

IGNORED_ENTRIES = {".maskgen.lock"}


def verb_folder(args: argparse.Namespace, verb: ModuleType) -> str | None:
    """The folder ``verb`` writes: ``--out``, or its ``DEFAULT_OUT`` under ``--model``."""
    return output_folder(args, getattr(verb, "DEFAULT_OUT", None))


def output_path(args: argparse.Namespace, verb: ModuleType) -> Path | None:
    """What the verb writes: its output folder, or the file of a verb whose output is one."""
    if verb.OUT == "file":
        return verb.output_file(args)
    if verb.OUT == "folder":
        out = verb_folder(args, verb)
        return Path(out) if out else None
    return None


def _recorded_run(out: str | None) -> dict[str, Any] | None:
    """The settings and step of the newest complete checkpoint in ``out``, if it holds a run."""
    from ..training.checkpoints import StepCheckpoints

    return StepCheckpoints(out).record() if out else None


def refuse_silent_overwrite(out: str | None, resume: bool, overwrite: bool) -> None:
    """A training verb on a folder that already holds a run continues it (``--resume``) or
    replaces it (``--overwrite``); it never silently overwrites a finished model."""
    if resume and overwrite:
        raise MaskgenError("--resume continues the run in --out and --overwrite replaces it: give one")
    record = _recorded_run(out)
    if record is None or resume or overwrite:
        return
    done = record.get("step", "?"), record.get("train", {}).get("steps", "?")
    raise MaskgenError(f"{out} already holds a training run (step {done[0]} of {done[1]}): continue it with --resume or replace it with --overwrite")


def generator_sha256(model: Path) -> str | None:
    """The sha256 of ``model``'s generator weights, as its config records it (the loader checks
    the weights against it), else of the file; None when the folder holds no generator."""
    config, weights = model / "generator.json", model / "generator.safetensors"
    recorded = load_json(config).get("sha256") if config.is_file() else None
    if isinstance(recorded, str):
        return recorded
    return file_sha256(weights) if weights.is_file() else None


def refuse_changed_resume(args: argparse.Namespace, verb: ModuleType, out: str | None) -> None:
    """``--resume`` continues the run recorded in ``out``: a setting that differs from it (batch
    size, lr, schedule, masking, a different tokenizer ...) is an error, not a silent change.
    This is the early look, from the options alone, before any data or model loads; the
    trainer compares its whole record (model config, data fingerprint, frozen networks) with
    the same ``resume_changes`` when it resumes."""
    record = _recorded_run(out) if getattr(args, "resume", False) else None
    if record is None:
        return
    from ..training.checkpoints import refuse_changed_run, resume_changes
    from ..training.trainer import TrainConfig

    now = {"train": asdict(pick(TrainConfig, args))}
    if hasattr(verb, "objective_config"):  # what shapes the run's trajectory, compared as the trainer compares it
        now["objective"] = asdict(pick(verb.objective_config(), args))
    frozen = getattr(verb, "FROZEN", None)  # the record entry holding the sha256 of the frozen network it trains against
    if frozen and getattr(args, "model", None):
        sha = generator_sha256(Path(args.model))
        if sha is not None:
            now[frozen] = sha  # another generator (teacher) is refused before its data is read or encoded
    changed = resume_changes(record, now)
    if hasattr(verb, "resume_changes"):
        changed += verb.resume_changes(args, out, record)
    refuse_changed_run(out, changed)


def refuse_foreign_output(args: argparse.Namespace, verb: ModuleType) -> None:
    """Rule: an output that holds something else is refused in one line, before any work,
    unless ``--overwrite`` asks for it; the installed package is never written into. "Something
    else" is anything in the folder (or the file itself) except a training run this verb
    continues or replaces (``refuse_silent_overwrite``), and what the verb keeps of its own
    (``KEEPS``: tune's trial log)."""
    out = output_path(args, verb)
    if out is None:
        return
    resolved = out.resolve()
    if resolved == PACKAGE or PACKAGE in resolved.parents:
        raise MaskgenError(f"{out} is inside the installed maskgen package ({PACKAGE}), which maskgen never writes into; give --out a folder of yours, e.g. runs/{args.verb}")
    if getattr(args, "overwrite", False):
        return
    if out.is_dir() and any((out / name).is_file() for name in getattr(verb, "KEEPS", ())):
        return  # its own log, which a rerun continues (and checks is for the same question)
    if verb.OUT == "file":
        if out.exists():
            raise MaskgenError(f"{out} already exists; give another --out, or --overwrite to replace it")
        return
    if not out.is_dir():
        return
    entries = sorted(e.name for e in out.iterdir() if e.name not in IGNORED_ENTRIES)
    if not entries:
        return
    if hasattr(args, "resume") and _recorded_run(str(out)) is not None:
        return  # a training run: --resume continues it, and without it refuse_silent_overwrite refuses
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise MaskgenError(f"{out} already holds {shown}; give an empty or new --out, or --overwrite to write over it")


def model_tokens(model: str | None) -> int | None:
    """The token count N of the generator in ``model`` (default: the shipped one), from its
    config alone; None when there is none to read (the verb then says why, in its own words)."""
    config_file = (Path(model) if model else REFERENCE) / "generator.json"
    if not config_file.is_file():
        return None
    grid = load_json(config_file).get("config", {}).get("grid")
    if not isinstance(grid, list) or len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid):
        return None  # the model's loader refuses it in one line
    return grid[0] * grid[1]


def refuse_unbounded_steps(args: argparse.Namespace) -> None:
    """Rule: no request makes work without bound. Every verb that samples (its --steps, or the
    steps of its --spec) takes at most one step per token of the model.

    Enforced here, for the command line, and not in the sampling loop: there T > N is accepted
    on purpose (the counted rules reveal a token a step until none is left and the rest of the
    steps are passes that decide nothing, which the library's tests rely on), so the Python API
    keeps it; from the command line 100000 steps on 64 tokens is a typo that would run for hours."""
    if not (hasattr(args, "spec") and hasattr(args, "head_sampler")):
        return
    if args.verb == "eval" and args.samples is not None:
        return  # scores given samples, samples nothing
    model, steps, source = getattr(args, "model", None), getattr(args, "steps", None), "--steps"
    if args.verb == "refine" and model is None and args.samples is not None:
        from .sampling import refined_model

        model = refined_model(None, Path(args.samples))  # the model refine will load
    if steps is None and args.spec is not None:
        from ..sampling.spec import read_spec_file

        data = read_spec_file(args.spec)
        run, sampler = data.get("run"), data.get("sampler", data)
        steps, source = (sampler.get("steps") if isinstance(sampler, dict) else None), f"the spec {args.spec}"
        if model is None and isinstance(run, dict) and isinstance(run.get("model"), str):
            model = run["model"]
    n = model_tokens(model)
    if n is None:
        return
    where = f"the model in {model}" if model else "the shipped model"
    if isinstance(steps, int) and steps > n:
        fix = f"give --steps {n} or fewer" if source == "--steps" else f"give it {n} steps or fewer"
        raise MaskgenError(f"{source}: {steps} steps for {n} tokens: {where} has {n} positions to fill, so at most {n} steps do any work; {fix}")


def preflight(args: argparse.Namespace, verb: ModuleType) -> None:
    """Refuse, before any work, a device this machine lacks, an output that cannot be
    written and the verb options no config dataclass checks."""
    from ..devices import resolve_device
    from ..training.trainer import check_until

    if hasattr(args, "device"):
        resolve_device(args.device)
    if hasattr(args, "stop_at"):
        check_until(args.stop_at)
    if hasattr(verb, "check_first"):
        verb.check_first(args)
    if verb.OUT == "folder":
        writable_dir(verb_folder(args, verb))
    elif verb.OUT == "file":
        writable_file(verb.output_file(args))
    refuse_foreign_output(args, verb)
    refuse_unbounded_steps(args)
    if hasattr(verb, "check_bounds"):
        verb.check_bounds(args)
    if hasattr(args, "resume"):
        refuse_silent_overwrite(verb_folder(args, verb), args.resume, args.overwrite)
        refuse_changed_resume(args, verb, verb_folder(args, verb))
    if hasattr(verb, "check"):
        verb.check(args)
