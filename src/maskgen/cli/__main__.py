"""``python -m maskgen.cli`` (as ``torchrun ... -m maskgen.cli``) runs the ``maskgen`` command."""

import sys

from . import main

sys.exit(main())
