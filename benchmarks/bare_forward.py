"""The bare forward passes a sampler run makes, for ``sampling_speed.py``: the call pattern
(rows per network call, recorded with a forward hook), random inputs of those shapes, the
calls alone, and a stand-in network that returns cached logits (the loop's own time)."""

from __future__ import annotations

import torch
from torch import nn

from maskgen.models.transformer import MaskedTransformer


class CallRecorder:
    """Forward hook that records the batch rows of every network call."""

    def __init__(self, model: nn.Module):
        self.rows: list[int] = []
        self.handle = model.register_forward_hook(self.hook)

    def hook(self, module, inputs, output) -> None:
        self.rows.append(int(inputs[0].shape[0]))

    def remove(self) -> None:
        self.handle.remove()


def bare_inputs(model: MaskedTransformer, rows: list[int], device: torch.device, seed: int):
    """Random (tokens, labels[, t]) for each recorded call; made once, outside the timing."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for b in rows:
        tokens = torch.randint(0, c.codebook_size + 1, (b, c.num_tokens), generator=g).to(device)
        labels = torch.randint(0, c.num_classes + 1, (b,), generator=g).to(device)
        t = torch.rand(b, generator=g).to(device) if c.timestep_input else None
        inputs.append((tokens, labels, t))
    return inputs


def run_bare(model: MaskedTransformer, inputs) -> None:
    for tokens, labels, t in inputs:
        if t is None:
            model(tokens, labels)
        else:
            model(tokens, labels, t)


class CachedLogits(nn.Module):
    """Stands in for the generator: returns precomputed logits of the right shape at no cost,
    so a sampler run on it times the loop alone (draws, ranking, guidance, bookkeeping)."""

    def __init__(self, model: MaskedTransformer, inputs):
        super().__init__()
        self.config = model.config
        self._null_class = model.null_class
        self.anchor = nn.Parameter(torch.zeros(1, device=next(model.parameters()).device))
        self.cache: dict[int, torch.Tensor] = {}
        for tokens, labels, t in inputs:
            if len(tokens) not in self.cache:
                self.cache[len(tokens)] = model(tokens, labels) if t is None else model(tokens, labels, t)

    @property
    def null_class(self) -> int:
        return self._null_class

    time_input = MaskedTransformer.time_input

    def forward(self, tokens, labels, t=None, **kw):
        return self.cache[len(tokens)]
