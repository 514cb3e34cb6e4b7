"""The fill rules, one module each: a spec registered in ``registry.FILLS`` and
its runtime class. Every module of this folder is imported here, so a new piece is a new file."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
