"""What ``maskgen <verb>`` checks before it does any work, so bad input ends in one line on
stderr and nothing is written.

- argparse's own errors (``--width abc``, an unknown option) become that one line too,
  instead of a usage block;
- a recipe's values are checked as argparse checks command-line strings (a number where a
  number belongs, two for a pair, true/false for a switch), and ``null`` is refused where
  the option has a default: dropping it would silently train with another default;
- the device, the output path and the options that belong to no config dataclass are
  checked before the verb starts. The numbers that do belong to one (``TrainConfig``,
  ``GeneratorConfig`` ...) are checked by the dataclass, for the Python API too.
"""

from __future__ import annotations

import argparse
import numbers
from pathlib import Path
from typing import Any, NoReturn

from .commands import verb_modules
from .errors import MaskgenError
from .validate import integer, writable_dir, writable_file

# verbs whose --out is a folder; finetune-sg, train-critic and distill default to a sub-folder of --model
FOLDER_OUT = {"train-tokenizer", "encode", "train", "import", "sample", "refine", "train-classifier", "export", "demo"} | {
    name for name, module in verb_modules().items() if module.WRITES_FOLDER
}
DEFAULT_SUBFOLDER = {"finetune-sg": "self-guidance", "train-critic": "critic", "distill": "one-step"}


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a ``MaskgenError``: one line, exit code 2,
    like every other bad input, instead of a usage block and ``SystemExit``."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.partition(" ")[2]
        raise MaskgenError(f"{verb}: {message}" if verb else message)


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Add ``(default: X)`` to the help of every option of ``parser`` that has a default of its
    own, so ``--help`` shows it, as argparse's ``ArgumentDefaultsHelpFormatter`` would, minus its
    noise: nothing for a default of None (the option then means "the model's own", "the spec's",
    "the one the file records", which its help says in words), for a switch, or for a help that
    already names its default. Call it once the parser's defaults are set."""
    for action in parser._actions:
        default, help = action.default, action.help or ""
        if not action.option_strings or default is None or default is argparse.SUPPRESS or action.nargs == 0:
            continue
        if help is argparse.SUPPRESS or "default" in help.lower():
            continue
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        action.help = f"{help} (default: {shown.replace('%', '%%')})" if help else f"(default: {shown.replace('%', '%%')})"


def _kind(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return "switch"
    if action.type in (int, float):
        return "pair" if action.nargs == 2 else "number"
    return None


def _scalar(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    want = "an integer" if action.type is int else "a number"
    if isinstance(value, str):
        try:
            return action.type(value)
        except ValueError:
            raise MaskgenError(f"{where}: {key} must be {want}, got {value!r}") from None
    ok = numbers.Integral if action.type is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok):
        raise MaskgenError(f"{where}: {key} must be {want}, got {value!r}")
    return value


def recipe_value(action: argparse.Action, key: str, value: Any, default: Any, where: str) -> Any:
    """A recipe's ``value`` for ``action``, checked (and a numeric string converted) the way
    argparse treats the same option on the command line."""
    if value is None:
        if default is not None:
            raise MaskgenError(f"{where}: {key} is null; give a value or leave the key out (default {default!r})")
        return None
    kind = _kind(action)
    if kind == "switch":
        if not isinstance(value, bool):
            raise MaskgenError(f"{where}: {key} must be true or false, got {value!r}")
    elif kind == "number":
        return _scalar(action, key, value, where)
    elif kind == "pair":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise MaskgenError(f"{where}: {key} must be a list of two numbers, got {value!r}")
        return type(value)(_scalar(action, key, v, where) for v in value)
    elif isinstance(value, (bool, list, dict)):
        raise MaskgenError(f"{where}: {key} must be a single value, got {value!r}")
    elif not isinstance(value, str):
        return str(value)  # `classes: 7`: what the command line would have given
    return value


def output_folder(args: argparse.Namespace) -> str | None:
    """The folder a verb writes: ``--out``, or its default under ``--model``."""
    if args.verb in DEFAULT_SUBFOLDER and args.out is None:
        return str(Path(args.model) / DEFAULT_SUBFOLDER[args.verb])
    return args.out


def _recorded_run(out: str | None) -> dict[str, Any] | None:
    """The settings and step of the newest complete checkpoint in ``out``, if it holds a run."""
    from .training.checkpoints import StepCheckpoints

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


# what shapes a run's trajectory is compared by training/checkpoints.resume_changes, for every trainer
OBJECTIVES = {
    "train": ("training.masking", "MaskedObjectiveConfig"),
    "finetune-sg": ("training.self_guidance", "SelfGuidanceObjectiveConfig"),
    "train-critic": ("training.critic", "CriticObjectiveConfig"),
    "distill": ("training.distill", "DistillConfig"),
}


# generator options the model config records that the trainer's own record does not hold
LAYOUT_RESUME = ("norm_eps", "uncond", "attn_dropout", "proj_dropout", "mlp_dropout")


def _changed_layout(args: argparse.Namespace, out: str) -> list[str]:
    """The ``LAYOUT_RESUME`` options given now that differ from the model config of the run's
    newest checkpoint (an option left out takes its default, as a fresh run would)."""
    from .checkpoint import load_json
    from .training.checkpoints import StepCheckpoints

    latest = StepCheckpoints(out).latest()
    config_file = latest / "generator.json" if latest is not None else None
    if config_file is None or not config_file.is_file():
        return []
    import dataclasses

    from .models.continuous import ContinuousConfig
    from .models.transformer import GeneratorConfig
    from .training.checkpoints import plain

    record = load_json(config_file)
    before = record.get("config", {})
    config_class = ContinuousConfig if record.get("kind") == "continuous_generator" else GeneratorConfig
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}  # what a fresh run would take
    changed = []
    for key in LAYOUT_RESUME:
        now = getattr(args, key, None)
        now = defaults.get(key) if now is None else now
        if key in before and now is not None and plain(before[key]) != plain(now):
            changed.append(f"{key} {before[key]} -> {now}")
    return changed


# the record entry holding the sha256 of the frozen network a verb trains against
FROZEN = {"finetune-sg": "generator_sha256", "train-critic": "generator_sha256", "distill": "teacher_sha256"}


def generator_sha256(model: Path) -> str | None:
    """The sha256 of ``model``'s generator weights, as its config records it (the loader checks
    the weights against it), else of the file; None when the folder holds no generator."""
    from .checkpoint import file_sha256, load_json

    config, weights = model / "generator.json", model / "generator.safetensors"
    recorded = load_json(config).get("sha256") if config.is_file() else None
    if isinstance(recorded, str):
        return recorded
    return file_sha256(weights) if weights.is_file() else None


def refuse_changed_resume(args: argparse.Namespace, out: str | None) -> None:
    """``--resume`` continues the run recorded in ``out``: a setting that differs from it (batch
    size, lr, schedule, masking, a different tokenizer ...) is an error, not a silent change.
    This is the early look, from the options alone, before any data or model loads; the
    trainer compares its whole record (model config, data fingerprint, frozen networks) with
    the same ``resume_changes`` when it resumes."""
    record = _recorded_run(out) if getattr(args, "resume", False) else None
    if record is None:
        return
    import importlib
    from dataclasses import asdict

    from .checkpoint import file_sha256
    from .cli import pick
    from .training.checkpoints import refuse_changed_run, resume_changes
    from .training.trainer import TrainConfig

    now = {"train": asdict(pick(TrainConfig, args))}
    if args.verb in OBJECTIVES:
        module, name = OBJECTIVES[args.verb]
        now["objective"] = asdict(pick(getattr(importlib.import_module(f"maskgen.{module}"), name), args))
    frozen = FROZEN.get(args.verb)
    if frozen and getattr(args, "model", None):
        sha = generator_sha256(Path(args.model))
        if sha is not None:
            now[frozen] = sha  # another generator (teacher) is refused before its data is read or encoded
    changed = resume_changes(record, now)
    if args.verb == "train":
        changed += _changed_layout(args, out)
    if args.verb == "train-tokenizer" and record.get("kind", "vq") != args.kind:
        changed.append(f"kind {record.get('kind', 'vq')} -> {args.kind}")
    tokenizer = getattr(args, "tokenizer", None)
    mine = Path(out) / "tokenizer.safetensors"
    if args.verb == "train" and tokenizer and mine.is_file() and (Path(tokenizer) / "tokenizer.safetensors").is_file():
        if file_sha256(Path(tokenizer) / "tokenizer.safetensors") != file_sha256(mine):
            changed.append(f"--tokenizer {tokenizer} is not the tokenizer of this run ({mine})")
    refuse_changed_run(out, changed)


PACKAGE = Path(__file__).resolve().parent
FILE_OUT = {"eval", "ref-stats"}  # verbs whose --out is a file
# what a verb continues in its own --out (an interrupted encode works in a scratch folder beside
# --out, so a finished cache in --out is "something else" like any other: refused, --overwrite
# re-encodes it); tune continues its trial log, and refuses any other content
KEEPS_ITS_OWN = {"tune": ("trials.jsonl", "tune.json")}
IGNORED_ENTRIES = {".maskgen.lock"}


def output_path(args: argparse.Namespace) -> Path | None:
    """What the verb writes: its output folder, or for eval and ref-stats the file."""
    if args.verb in FILE_OUT:
        if args.verb == "eval":
            from .sampling_commands import eval_output

            return Path(eval_output(args))
        from .metrics.stats import stats_path

        return Path(stats_path(args.out)) if args.out else None
    if args.verb in FOLDER_OUT or args.verb in DEFAULT_SUBFOLDER:
        out = output_folder(args)
        return Path(out) if out else None
    return None


def refuse_foreign_output(args: argparse.Namespace) -> None:
    """Rule: an output that holds something else is refused in one line, before any work,
    unless ``--overwrite`` asks for it; the installed package is never written into. "Something
    else" is anything in the folder (or the file itself) except a training run this verb
    continues or replaces (``refuse_silent_overwrite``), and tune's own trial log."""
    out = output_path(args)
    if out is None:
        return
    resolved = out.resolve()
    if resolved == PACKAGE or PACKAGE in resolved.parents:
        raise MaskgenError(f"{out} is inside the installed maskgen package ({PACKAGE}), which maskgen never writes into; give --out a folder of yours, e.g. runs/{args.verb}")
    if getattr(args, "overwrite", False):
        return
    if out.is_dir() and any((out / name).is_file() for name in KEEPS_ITS_OWN.get(args.verb, ())):
        return  # its own log, which a rerun continues (and checks is for the same question)
    if args.verb in FILE_OUT:
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


def _model_tokens(model: str | None) -> int | None:
    """The token count N of the generator in ``model`` (default: the shipped one), from its
    config alone; None when there is none to read (the verb then says why, in its own words)."""
    from .checkpoint import load_json

    config_file = (Path(model) if model else PACKAGE / "reference") / "generator.json"
    if not config_file.is_file():
        return None
    grid = load_json(config_file).get("config", {}).get("grid")
    if not isinstance(grid, list) or len(grid) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid):
        return None  # the model's loader refuses it in one line
    return grid[0] * grid[1]


def refuse_unbounded_work(args: argparse.Namespace) -> None:
    """Rule: no request makes work without bound. Every verb that samples (its --steps, or the
    steps of its --spec) takes at most one step per token of the model, and tune's --nfe budgets
    at most what a candidate can spend at one step per token (``MAX_STEP_PASSES`` each).

    Enforced here, for the command line, and not in the sampling loop: there T > N is accepted
    on purpose (the counted rules reveal a token a step until none is left and the rest of the
    steps are passes that decide nothing, which the library's tests rely on), so the Python API
    keeps it; from the command line 100000 steps on 64 tokens is a typo that would run for hours."""
    sampler_verb = hasattr(args, "spec") and hasattr(args, "head_sampler")
    if not sampler_verb and args.verb != "tune":
        return
    if args.verb == "eval" and args.samples is not None:
        return  # scores given samples, samples nothing
    model, steps, source = getattr(args, "model", None), getattr(args, "steps", None), "--steps"
    if args.verb == "refine" and model is None and args.samples is not None:
        from .sampling_commands import refined_model

        model = refined_model(None, Path(args.samples))  # the model refine will load
    if sampler_verb and steps is None and args.spec is not None:
        from .sampling.spec import read_spec_file

        data = read_spec_file(args.spec)
        run, sampler = data.get("run"), data.get("sampler", data)
        steps, source = (sampler.get("steps") if isinstance(sampler, dict) else None), f"the spec {args.spec}"
        if model is None and isinstance(run, dict) and isinstance(run.get("model"), str):
            model = run["model"]
    n = _model_tokens(model)
    if n is None:
        return
    where = f"the model in {model}" if model else "the shipped model"
    if sampler_verb and isinstance(steps, int) and steps > n:
        fix = f"give --steps {n} or fewer" if source == "--steps" else f"give it {n} steps or fewer"
        raise MaskgenError(f"{source}: {steps} steps for {n} tokens: {where} has {n} positions to fill, so at most {n} steps do any work; {fix}")
    if args.verb == "tune":
        from .tuning import parse_budgets
        from .tuning_space import MAX_STEP_PASSES

        most = n * MAX_STEP_PASSES
        over = [b for b in parse_budgets(args.nfe) if b > most]
        if over:
            raise MaskgenError(f"--nfe {over[0]}: no sampler reaches that budget on {where}: at most {n} steps (one per token) of at most {MAX_STEP_PASSES} network passes each, NFE {most}; give budgets up to {most}")


def preflight(args: argparse.Namespace) -> None:
    """Refuse, before any work, a device this machine lacks, an output that cannot be
    written and the verb options no config dataclass checks."""
    from .training.trainer import check_until, resolve_device

    if hasattr(args, "device"):
        resolve_device(args.device)
    if hasattr(args, "stop_at"):
        check_until(args.stop_at)
    verb = args.verb
    if verb == "train-tokenizer":
        from .tokenizer_commands import check_kind

        check_kind(args)
    if verb in FOLDER_OUT or verb in DEFAULT_SUBFOLDER:
        writable_dir(output_folder(args))
    elif verb == "ref-stats":
        from .metrics.stats import stats_path

        writable_file(stats_path(args.out))
    elif verb == "eval":
        from .sampling_commands import eval_output

        writable_file(eval_output(args))
    refuse_foreign_output(args)
    refuse_unbounded_work(args)
    if hasattr(args, "resume"):
        refuse_silent_overwrite(output_folder(args), args.resume, args.overwrite)
        refuse_changed_resume(args, output_folder(args))
    if verb == "train-critic":
        integer("--heldout", args.heldout, 1)
    if verb == "encode":
        integer("--batch-size", args.batch_size, 1)
    if verb == "demo":
        integer("--num", args.num, 1)
