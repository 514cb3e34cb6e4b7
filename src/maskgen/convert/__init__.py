"""Converters from published checkpoint formats to maskgen checkpoints: one module per format,
each a key filter onto a maskgen module whose parameter names match the original's."""
