"""The verbs of ``maskgen``, one module each, in the order ``maskgen --help`` lists them.

A verb module has ``NAME`` (the verb), ``HELP`` (its line in ``--help``), ``REQUIRED`` (options
that must be given, on the command line or in a recipe: argparse cannot enforce them itself),
``OUT`` (``"folder"`` or ``"file"``: what ``--out`` is, checked and locked before the verb runs;
None: it writes nothing), ``add_options(parser)`` and ``run(args)``, which turns the options into
a spec, run settings and folders once and calls the library. Optional: ``DEFAULT_OUT`` (the
output's sub-folder of ``--model`` when ``--out`` is left out), ``TRAIN_DEFAULTS``,
``PRESETS()``, ``objective_config()`` and ``FROZEN`` (what ``--resume`` compares),
``resume_changes``, ``KEEPS`` (files of its own a rerun continues), ``LOCKS_OUT = False``, and
checks run before any work: ``check_first``, ``check_bounds``, ``check`` (``cli/checks.py``).
A new verb is a new module here and its line below; heavy imports go inside ``run``.
"""

from . import (
    app,
    demo,
    distill,
    encode,
    evaluate,
    export,
    finetune_sg,
    import_,
    inpaint,
    refine,
    ref_stats,
    sample,
    train,
    train_classifier,
    train_critic,
    train_tokenizer,
    tune,
)

VERBS = {
    m.NAME: m
    for m in (train_tokenizer, encode, train, import_, finetune_sg, train_critic, refine, sample, train_classifier, ref_stats, evaluate, export,
              app, demo, distill, inpaint, tune)
}
