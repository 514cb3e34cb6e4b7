"""``sampling_speed.py --profile``: where a sampler run's time goes outside the network passes.

The generator's forward is wrapped in a profiler range ("model_forward"); every op that runs
outside such a range (log-softmax, guidance, the TOAST module, token draws, Gumbel noise,
ranking, bookkeeping) is summed by name, self CPU time.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from maskgen.models.transformer import MaskedTransformer


class Labelled(nn.Module):
    """The generator with its ``run`` (what ``forward`` and every internal pass call) in a profiler range."""

    def __init__(self, inner: MaskedTransformer):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.sha256 = inner.sha256

    @property
    def null_class(self) -> int:
        return self.inner.null_class

    @property
    def mask_id(self) -> int:
        return self.inner.mask_id

    time_input = MaskedTransformer.time_input
    forward = MaskedTransformer.forward

    @property
    def blocks(self):
        return self.inner.blocks

    def run(self, *a, **kw):
        with torch.profiler.record_function("model_forward"):
            return self.inner.run(*a, **kw)


def profile_loop(model: MaskedTransformer, make_sampler: Callable[[nn.Module], object], labels: torch.Tensor, seed: int, title: str, top: int) -> str:
    """Self CPU time of the ops outside the network passes over one run of ``make_sampler(wrapped model)``."""
    from torch.profiler import ProfilerActivity, profile

    device = labels.device
    sampler = make_sampler(Labelled(model))
    with torch.inference_mode():
        sampler(labels, torch.Generator(device=device).manual_seed(seed))  # warm
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            sampler(labels, torch.Generator(device=device).manual_seed(seed))
            wall = time.perf_counter() - t0
    events = prof.events()

    def inside_forward(e) -> bool:
        p = e
        while p is not None:
            if p.name == "model_forward":
                return True
            p = p.cpu_parent
        return False

    fwd_us = sum(e.cpu_time_total for e in events if e.name == "model_forward")
    per_op: dict[str, list[float]] = {}
    for e in events:
        if e.name == "model_forward" or e.device_type.name != "CPU" or inside_forward(e):
            continue
        acc = per_op.setdefault(e.name, [0.0, 0])
        acc[0] += e.self_cpu_time_total
        acc[1] += 1
    outside = sum(v[0] for v in per_op.values())
    lines = [
        f"### Profile: {title}",
        "",
        f"one sampler run under the profiler: {wall * 1e3:.1f} ms wall; forward ranges {fwd_us / 1e3:.1f} ms; "
        f"ops outside the forward passes {outside / 1e3:.1f} ms self CPU (profiler overhead inflates both)",
        "",
        "| op (outside forward) | calls | self CPU ms | share of outside |",
        "|---|--:|--:|--:|",
    ]
    for name, (us, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| {name} | {n} | {us / 1e3:.2f} | {us / max(outside, 1e-9) * 100:.1f}% |")
    return "\n".join(lines)
