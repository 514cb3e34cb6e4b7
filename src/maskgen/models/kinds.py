"""The generator kinds a model folder's ``generator.json`` records (its ``kind``), and the class
each loads with: the one table from a recorded kind to its network."""

from __future__ import annotations

from .continuous import ContinuousGenerator
from .joint import JointTransformer
from .transformer import MaskedTransformer

GENERATORS = {cls.checkpoint_kind: cls for cls in (MaskedTransformer, ContinuousGenerator, JointTransformer)}
"""kind -> generator class (a record without a kind, from before kinds were recorded: ``generator``)."""


def generator_class(record: dict):
    """The generator class of a ``generator.json`` record (``MaskedTransformer`` for an unknown kind,
    which its loader then refuses by name)."""
    return GENERATORS.get(record.get("kind", MaskedTransformer.checkpoint_kind), MaskedTransformer)
