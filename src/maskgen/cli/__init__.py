"""``maskgen <verb>``: every verb is a module of ``verbs/`` (``maskgen --help`` lists them).

Every option of a verb can also come from a YAML recipe (``--config FILE``); options given on
the command line win over the recipe, which wins over a preset (``--preset NAME``, for
``train`` and ``distill``). Before a verb runs, ``checks.preflight`` refuses what would fail
later (a device this machine lacks, an output that holds something else, work without bound, a
changed ``--resume``), and the verb's output folder is locked. Bad input ends in one line on
stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import MaskgenError
from ..folder_lock import folder_lock
from ..memory import keep_freed_memory
from ..progress import interval as progress_interval
from .checks import preflight, verb_folder
from .options import OneLineParser, load_recipe, pick, preset_options, show_defaults
from .verbs import VERBS

__all__ = ["build_parser", "load_recipe", "main", "parse_args", "pick", "run"]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``maskgen`` parser and each verb's sub-parser, from the verb modules in ``verbs/``."""
    parser = OneLineParser(prog="maskgen", description="Masked generative image models (MaskGIT family).")
    subs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs: dict[str, argparse.ArgumentParser] = {}
    for name, verb in VERBS.items():
        p = subs.add_parser(name, help=verb.HELP, description=verb.HELP)
        p.add_argument("--config", help="YAML recipe whose keys are this verb's options")
        verb.add_options(p)
        if verb.OUT is not None and "--overwrite" not in p._option_string_actions:  # every verb that writes can be told to write over what its output holds
            p.add_argument("--overwrite", action="store_true", help="write over what --out already holds (refused otherwise)")
        p.set_defaults(**getattr(verb, "TRAIN_DEFAULTS", {}))
        show_defaults(p)  # --help shows every default the parser knows
        verbs[name] = p
    return parser, verbs




def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser, verbs = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    sub = verbs[args.verb]  # its TRAIN_DEFAULTS are set (build_parser)
    recipe = load_recipe(args.config, sub) if args.config else {}
    sub.set_defaults(**{**preset_options(args, VERBS[args.verb], recipe, sub), **recipe})
    args = parser.parse_args(argv)
    for name in VERBS[args.verb].REQUIRED:
        if getattr(args, name) is None:
            raise MaskgenError(f"{args.verb}: --{name} is required (on the command line or in the recipe)")
    return args


def run(args: argparse.Namespace) -> None:
    verb = VERBS[args.verb]
    preflight(args, verb)
    locked = verb.OUT == "folder" and getattr(verb, "LOCKS_OUT", True)
    with folder_lock(verb_folder(args, verb) if locked else None):
        verb.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    keep_freed_memory()  # every verb allocates the same large activations step after step
    try:
        progress_interval()  # a bad MASKGEN_PROGRESS_INTERVAL is refused before any work, not at the first bar
        run(parse_args(argv))
    except MaskgenError as e:
        _fresh_line()
        print(f"maskgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _fresh_line()
        print("maskgen: interrupted", file=sys.stderr)
        return 130
    return 0


def _fresh_line() -> None:
    """End a progress bar the error interrupted, so the message starts its own line."""
    from tqdm import tqdm

    if sys.stderr.isatty() and any(not getattr(bar, "disable", True) for bar in list(getattr(tqdm, "_instances", ()))):
        sys.stderr.write("\n")
