"""Token draws: softmax temperature, top-k, top-p (nucleus), argmax on the last step (003)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Sequence, Union

import torch
from torch import Tensor

from ..errors import MaskgenError
from .registry import option


def stream_seed(*key: int) -> int:
    """A 63-bit seed for the stream named by ``key`` (seed, image index, ...): a hash, so
    nearby keys give unrelated streams and no two keys collide by arithmetic."""
    digest = hashlib.sha256("/".join(str(int(k)) for k in key).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ImageNoise:
    """One random stream per image of a batch, so an image's draws depend only on the run's
    seed and the image's index: the first k images of ``--num 100`` are those of ``--num k``,
    whatever the batch size. Stream i is seeded by ``stream_seed(seed, index[i], *extra)``.
    Passed to the loop in place of a ``torch.Generator``; every draw has the batch first."""

    def __init__(self, seed: int, indices: Sequence[Sequence[int]] | Sequence[int], device: torch.device | str = "cpu") -> None:
        keys = [tuple(k) if isinstance(k, (tuple, list)) else (k,) for k in indices]
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(stream_seed(seed, *k)) for k in keys]

    def __len__(self) -> int:
        return len(self.generators)

    def _rows(self, draw, shape: tuple[int, ...]) -> Tensor:
        if not shape or shape[0] != len(self.generators):
            raise ValueError(f"a draw of shape {tuple(shape)} does not have one row per image ({len(self.generators)})")
        return torch.stack([draw(shape[1:], generator=g, device=self.device) for g in self.generators])

    def rand(self, shape: tuple[int, ...]) -> Tensor:
        return self._rows(torch.rand, shape)

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        return self._rows(torch.randn, shape)


class PositionNoise:
    """Draws for the M positions that ``where`` [B, N] selects, each from its own image's
    stream (a diffusion head draws a token per revealed position, not per image): a draw of
    shape (M, ...) takes the image's full (N, ...) draw and keeps the selected positions, so
    an image's tokens do not depend on the other images in its batch."""

    def __init__(self, noise: ImageNoise, where: Tensor) -> None:
        self.noise, self.where = noise, where.to(noise.device)
        self.device = noise.device
        self.count = int(self.where.sum())  # once: a head sampler draws through this at every step

    def _select(self, draw, shape: tuple[int, ...]) -> Tensor:
        if not shape or shape[0] != self.count:
            raise ValueError(f"a draw of shape {tuple(shape)} does not have one row per selected position ({self.count})")
        return draw((*self.where.shape, *shape[1:]))[self.where]

    def rand(self, shape: tuple[int, ...]) -> Tensor:
        return self._select(self.noise.rand, shape)

    def randn(self, shape: tuple[int, ...]) -> Tensor:
        return self._select(self.noise.randn, shape)


Noise = Union[torch.Generator, ImageNoise, PositionNoise]


def _draw(method: str, shape: tuple[int, ...], generator: Noise, device) -> Tensor:
    if not isinstance(generator, torch.Generator):  # ImageNoise, or a view of it
        out = getattr(generator, method)(shape)
    else:
        out = getattr(torch, method)(shape, generator=generator, device=generator.device)
    return out.to(device) if device is not None else out


def uniform(shape: tuple[int, ...], generator: Noise, device: torch.device | str | None = None) -> Tensor:
    """U(0,1) from ``generator`` (one stream, or one per image); moved to ``device``."""
    return _draw("rand", shape, generator, device)


def normal(shape: tuple[int, ...], generator: Noise, device: torch.device | str | None = None) -> Tensor:
    """N(0, 1) from ``generator`` (one stream, or one per image); moved to ``device``."""
    return _draw("randn", shape, generator, device)


def gumbel(shape: tuple[int, ...], generator: Noise, device=None) -> Tensor:
    u = uniform(shape, generator, device).clamp_(1e-20, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


def inverse_cdf(logp: Tensor, u: Tensor) -> Tensor:
    """Draw one code per position from log-probabilities [..., K] with uniforms ``u`` [...].

    One uniform per position instead of K Gumbel draws. Zero-probability codes have flat
    CDF segments, so searchsorted(right=True) never lands on them.
    """
    cdf = logp.exp().cumsum(-1)
    return torch.searchsorted(cdf, u[..., None] * cdf[..., -1:], right=True).squeeze(-1).clamp_(max=logp.shape[-1] - 1)


@dataclass
class TokenDraw:
    """How a candidate token is drawn at each position from the (guided) log-probabilities.

    ``temperature`` divides the logits (0 means argmax); ``top_k`` keeps the k most likely
    codes (0: all); ``top_p`` keeps the smallest set whose mass reaches p (1: all);
    ``argmax_last`` takes the most likely code at the last step (Discrete Interpolants, Sec. 3.3).
    ``temperature_end``: if set, the temperature changes over the steps so that its inverse
    (the factor the logits are multiplied by) runs linearly from 1/``temperature`` at the
    first step to 1/``temperature_end`` at the last: the Halton scheduler's code (Besnier et
    al. 2025) multiplies the logits by linspace(sm_temp_min, sm_temp_max, T), 1 -> 1.2.
    """

    temperature: float = field(default=1.0, metadata=option("temperature", "softmax temperature of the token draw (default 1; 0: argmax)"))
    top_k: int = field(default=0, metadata=option("top_k", "draw from the k most likely codes (default 0: all)"))
    top_p: float = field(default=1.0, metadata=option("top_p", "draw from the smallest set of codes whose mass reaches p (default 1: all)"))
    argmax_last: bool = field(default=False, metadata=option("argmax_last", "argmax draw on the last step (Discrete Interpolants)", action="store_true"))
    temperature_end: float | None = field(default=None, metadata=option("temperature_end", "token draw: temperature at the last step, 1/temperature ramped linearly (Halton code)", type=float))

    def at(self, step) -> "TokenDraw":
        """The draw at ``step``: this one, or with the ramped temperature."""
        if self.temperature_end is None:
            return self
        # float32 steps, as torch.linspace makes them in the Halton code
        beta = float(torch.linspace(1.0 / self.temperature, 1.0 / self.temperature_end, step.total)[step.index])
        return dataclasses.replace(self, temperature=1.0 / beta, temperature_end=None)

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature):
            raise MaskgenError(f"temperature must be a finite number, got {self.temperature}")
        if self.temperature < 0:
            raise MaskgenError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise MaskgenError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise MaskgenError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature_end is not None:
            if isinstance(self.temperature_end, bool) or not isinstance(self.temperature_end, (int, float)) or not math.isfinite(self.temperature_end) or self.temperature_end <= 0:
                raise MaskgenError(f"temperature_end must be a finite number > 0, got {self.temperature_end!r}")
            if self.temperature <= 0:
                raise MaskgenError("a temperature ramp (temperature_end) needs a temperature > 0 to start from")

    def log_probs(self, logits: Tensor) -> Tensor:
        """The distribution tokens are drawn from: tempered, truncated, renormalised."""
        if self.temperature > 0 and self.temperature != 1.0:
            logits = logits / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            # drop a code when the mass before it already reaches p (the top code always stays)
            drop_sorted = (probs.cumsum(-1) - probs) >= self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        return logits.log_softmax(-1)

    def __call__(self, logits: Tensor, generator: Noise, last: bool = False) -> tuple[Tensor, Tensor]:
        """Return drawn tokens [B, N] and their log-probability under the draw distribution."""
        logp = self.log_probs(logits.float())
        if self.temperature == 0 or (last and self.argmax_last):
            tokens = logp.argmax(-1)
        else:
            # the inverse-CDF draw replaced K Gumbel draws, the loop's largest cost
            tokens = inverse_cdf(logp, uniform(tuple(logp.shape[:-1]), generator, logp.device))
        return tokens, logp.gather(-1, tokens[..., None]).squeeze(-1)
