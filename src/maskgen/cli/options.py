"""The options of ``maskgen <verb>``: the ones every training verb shares, YAML recipes (``--config FILE``: a verb's options as keys, the
command line wins) and ``pick``, which fills a config dataclass from the parsed options.

Bad input ends in one line: argparse's own errors (``--width abc``, an unknown option) become a
``MaskgenError`` (``OneLineParser``), and a recipe's values are checked as argparse checks
command-line strings (a number where a number belongs, two for a pair, true/false for a
switch), ``null`` refused where the option has a default: dropping it would silently train with
another default.
"""

from __future__ import annotations

import argparse
import dataclasses
import numbers
from pathlib import Path
from typing import Any, NoReturn

from ..errors import MaskgenError


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a ``MaskgenError``: one line, exit code 2,
    like every other bad input, instead of a usage block and ``SystemExit``."""

    def error(self, message: str) -> NoReturn:
        verb = self.prog.partition(" ")[2]
        raise MaskgenError(f"{verb}: {message}" if verb else message)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The optimisation options every training verb shares (their defaults: the verb's ``TRAIN_DEFAULTS``)."""
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, help="optimizer steps")
    g.add_argument("--batch-size", type=int, help="global batch size (split over torchrun processes)")
    g.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    g.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup", type=int, help="linear warmup steps")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95))
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    g.add_argument("--ema", type=float, help="EMA decay of the saved weights (0: off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (atomic)")
    g.add_argument("--log-every", type=int, default=25)
    g.add_argument("--num-workers", type=int, default=0, help="data loader workers for lazy image folders")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--no-bf16", dest="bf16", action="store_false", help="disable bf16 autocast on CUDA")
    g.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step (the global batch stays --batch-size)")
    g.add_argument("--compile", action="store_true", help="wrap the model in torch.compile (CUDA: faster steps after a slow first one)")
    g.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT/checkpoints (another model, data or setting is refused)")
    g.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that already holds a training run")
    g.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) at this step; continue later with --resume")


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


def load_recipe(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options of the YAML recipe ``path`` for ``parser``'s verb, each checked as on the command line."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MaskgenError(f"recipe file does not exist: {p}")
    try:
        recipe = yaml.safe_load(p.read_bytes().decode("utf-8")) or {}
    except yaml.YAMLError as e:
        raise MaskgenError(f"malformed YAML recipe {p}: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise MaskgenError(f"recipe {p} is not a text file (YAML)") from None
    if not isinstance(recipe, dict):
        raise MaskgenError(f"recipe {p} must be a mapping of option: value")
    actions = {a.dest: a for a in parser._actions}
    out = {}
    for key, value in recipe.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in ("help", "config"):
            raise MaskgenError(f"unknown option {key!r} in recipe {p}")
        out[dest] = recipe_value(actions[dest], str(key), value, parser.get_default(dest), f"recipe {p}")
    return out


def preset_options(args: argparse.Namespace, verb, recipe: dict[str, Any], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options of the preset a verb names (``--preset NAME`` on the command line or in the
    recipe; the verb module's ``PRESETS``: (folder of NAME.yaml files, their names, what they are)),
    checked as a recipe's are, with ``preset`` itself set; {} without one. A preset is a recipe
    underneath the others: command line > ``--config`` recipe > preset > defaults."""
    presets = getattr(verb, "PRESETS", None)
    name = args.preset if presets is not None and args.preset is not None else recipe.get("preset")
    if presets is None or name is None:
        return {}
    folder, names, what = presets()
    if name not in names:
        raise MaskgenError(f"unknown {what} preset {name!r}; choose from {', '.join(names)}")
    options = load_recipe(str(folder / f"{name}.yaml"), parser)
    if "preset" in options:
        raise MaskgenError(f"{what} preset {name} names a preset itself")
    return {**options, "preset": name}


def pick(cls, args: argparse.Namespace, **overrides):
    """Build dataclass ``cls`` from the matching fields of ``args``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return cls(**{**values, **overrides})


def output_folder(args: argparse.Namespace, default: str | None = None) -> str | None:
    """The folder a verb writes: ``--out``, or ``default`` (a verb's ``DEFAULT_OUT``) under ``--model``."""
    if default is not None and args.out is None:
        return str(Path(args.model) / default)
    return args.out
