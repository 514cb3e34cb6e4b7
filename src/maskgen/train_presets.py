"""``maskgen train --preset NAME``: the ``train`` options of one authors' codebase's training
objective, shipped as ``training/presets/<NAME>.yaml`` (each file names the repository, file,
functions and commit it reproduces; docs/presets.md lists every difference).

A preset is a recipe underneath the others: command line > ``--config`` recipe > preset >
defaults. Its name may also come from the recipe (``preset: mar``). The name is kept in the
objective's config (``MaskedObjectiveConfig.preset``), so the saved model records it and
``--resume`` refuses a run with another preset.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import MaskgenError
from .training.masking import training_presets

PRESETS = Path(__file__).parent / "training" / "presets"


def add_train_options(g: argparse._ArgumentGroup) -> None:
    """The objective and dropout options the presets set (besides the older objective options)."""
    g.add_argument("--preset", default=None, help=f"the training objective of an authors' codebase: {', '.join(training_presets())} (options given here or in --config win)")
    g.add_argument("--t-max", type=float, default=None, help="uniform t in [t_min, t_max] (default 1; Discrete Interpolants' code: 0.999)")
    g.add_argument("--attn-dropout", type=float, default=None, help="dropout on the attention probabilities in training (default 0; MAR, eMIGM, valeoai v1: 0.1)")
    g.add_argument("--proj-dropout", type=float, default=None, help="dropout after the attention's output projection in training (default 0)")
    g.add_argument("--mlp-dropout", type=float, default=None, help="dropout after the MLP's GELU and after its output in training (default 0)")


def preset_options(args: argparse.Namespace, recipe: dict[str, Any], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The preset's options for ``train`` or ``distill`` (Di[M]O's code: ``training/distill_presets``;
    named on the command line or in the recipe), checked as a recipe's are, with ``preset``
    itself set; {} for other verbs or without a preset."""
    if args.verb not in ("train", "distill"):
        return {}
    name = args.preset if args.preset is not None else recipe.get("preset")
    if name is None:
        return {}
    if args.verb == "distill":
        from .training.distill_run import PRESETS as folder, distill_presets as names

        what = "distillation"
    else:
        folder, names, what = PRESETS, training_presets, "training"
    if name not in names():
        raise MaskgenError(f"unknown {what} preset {name!r}; choose from {', '.join(names())}")
    from .cli import load_recipe

    options = load_recipe(str(folder / f"{name}.yaml"), parser)
    if "preset" in options:
        raise MaskgenError(f"{what} preset {name} names a preset itself")
    return {**options, "preset": name}
