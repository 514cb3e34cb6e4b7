"""Old import path of ``maskgen.pipelines`` (a model folder and sampling from it), kept for code
that imports ``MaskGen``, ``reference_dir`` or ``save_samples`` from here; new code imports
``maskgen`` (``from maskgen import MaskGen``) or ``maskgen.pipelines``."""

from .pipelines import REFERENCE, MaskGen, masked_per_step_record, reference_dir, save_samples  # noqa: F401
from .tokenizers import copy_tokenizer  # noqa: F401
