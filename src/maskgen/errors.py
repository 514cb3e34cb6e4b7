"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class MaskgenError(Exception):
    """A user-facing error: bad input, bad path, bad checkpoint, diverged training."""
