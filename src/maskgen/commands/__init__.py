"""Verbs that live in a module of their own (``maskgen inpaint``, ``maskgen app``, ...).

Each module here is one verb, named like the module with ``_`` as ``-``, and provides:

- ``HELP``: one line for ``maskgen --help``;
- ``REQUIRED``: options that must be given (on the command line or in a recipe);
- ``WRITES_FOLDER``: True when ``--out`` is a folder the verb writes (it is then locked and
  checked like every other output folder);
- ``add_options(parser)`` and ``run(args)``; heavy imports go inside ``run`` so that
  ``maskgen --help`` stays fast.

``cli.py`` finds the modules itself, so adding a verb never touches it.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def verb_modules() -> dict[str, ModuleType]:
    """{verb name: module} for every module of this package, in name order."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return {name.replace("_", "-"): importlib.import_module(f"{__name__}.{name}") for name in found}
