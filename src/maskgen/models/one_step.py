"""A one-step student distilled from a generator by Di[M]O (Zhu, Wang, Lathuiliere and
Kalogeiton 2025, "Di[M]O: Distilling Masked Diffusion Models into One-step Generator").

The student is the generator's own network (``MaskedTransformer``, any layout maskgen has:
an imported valeoai v1 model distils into a v1-layout student) started from the teacher's
weights. It maps Di[M]O's initial token state x_init to logits z_theta in one pass; tokens
drawn from softmax(z_theta) are the sample.

The initial state (Di[M]O's token initialisation): at every position to generate, [MASK]
for a share ``r_init`` and a code drawn uniformly from the codebook elsewhere. The [MASK]
share keeps the input close to what the teacher saw in training; the random codes give
the one-step map the entropy an all-[MASK] input lacks (the same input for every image of
a class would give one image). ``mix``: ``count`` masks exactly round(M r_init) of the M
positions (the authors' code), ``bernoulli`` masks each independently with probability
r_init. ``embed_noise`` s > 0 also perturbs the token embeddings, s eps + sqrt(1 - s^2) e,
eps ~ N(0, I) per position (the authors' code: 0.1 on ImageNet).

Saved as ``one-step.{safetensors,json}`` with the sha256 of the teacher it was distilled
from and its initialisation; loading it against any other generator fails.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..validate import number, text
from .transformer import GeneratorConfig, MaskedTransformer

INIT_MIXES = ("count", "bernoulli")
# the embedding noise of the pass in flight, per thread: the app samples in threads, and module
# state would let one request's noise reach another's pass
_PASS = threading.local()


@dataclass
class StudentInit:
    """Di[M]O's token initialisation: the [MASK] share, how it is drawn, the embedding noise."""

    r_init: float = 0.6
    mix: str = "count"
    embed_noise: float = 0.0

    def __post_init__(self) -> None:
        self.check(self.r_init, self.mix, self.embed_noise, "StudentInit", "mix")
        self.r_init, self.embed_noise = float(self.r_init), float(self.embed_noise)

    @staticmethod
    def check(r_init, mix, embed_noise, owner: str, mix_name: str) -> None:
        """The three values' checks, in the words of ``owner`` (the distillation's config names
        the mix ``init_mix``)."""
        number("r_init", r_init, 0.0, 1.0, owner=owner)
        if text(mix_name, mix, owner) not in INIT_MIXES:
            raise MaskgenError(f"unknown token initialisation mix {mix!r}; choose from {', '.join(INIT_MIXES)}")
        number("embed_noise", embed_noise, 0.0, 1.0, owner=owner)
        if embed_noise == 1.0:
            raise MaskgenError(f"invalid {owner}: embed_noise 1 replaces the token embeddings by noise; give a value below 1")


def initial_tokens(base: Tensor, where: Tensor, init: StudentInit, mask_id: int, codebook_size: int, scores: Tensor, codes: Tensor) -> Tensor:
    """x_init [B, N]: ``base`` with the positions ``where`` [B, N] (all of them on a blank canvas,
    the region to fill when inpainting) set to [MASK] or a random code.

    ``scores`` and ``codes`` are uniforms [B, N]: ``count`` puts [MASK] on the round(M r_init)
    lowest-scored of the M positions of each row (round half to even, as torch rounds),
    ``bernoulli`` where score < r_init; every other position of ``where`` gets the code
    floor(u K). Uniforms rather than ``randint`` so that per-image noise streams can drive it.
    """
    random_codes = (codes * codebook_size).floor().long().clamp_(max=codebook_size - 1).to(base.device)
    scores = scores.to(base.device)
    if init.mix == "count":
        count = torch.round(where.sum(1).double() * init.r_init).long()
        ranks = scores.masked_fill(~where, float("inf")).argsort(1).argsort(1)
        masked = where & (ranks < count[:, None])
    else:
        masked = where & (scores < init.r_init)
    x = torch.where(where, random_codes, base)
    return torch.where(masked, torch.full_like(base, mask_id), x)


class OneStepStudent(MaskedTransformer):
    """The generator's network as a one-step generator: ``one_step(x_init, labels) -> z_theta``."""

    checkpoint_name = "one-step"
    checkpoint_kind = "one_step_student"

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.teacher_sha256: str | None = None
        self.init = StudentInit()

    @classmethod
    def for_teacher(cls, teacher: MaskedTransformer, init: StudentInit) -> "OneStepStudent":
        """A student that starts as an exact copy of ``teacher`` (Di[M]O initialises it so)."""
        if type(teacher) is not MaskedTransformer:
            raise MaskgenError(f"Di[M]O distils a discrete-token generator (MaskedTransformer), not a {type(teacher).__name__}")
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the caller's RNG as it was
            student = cls(GeneratorConfig.from_dict(asdict(teacher.config)))
        student.load_state_dict(teacher.state_dict())
        student.teacher_sha256, student.init = teacher.sha256, init
        return student.to(next(teacher.parameters()).device)

    def token_embeddings(self, tokens: Tensor) -> Tensor:
        e = super().token_embeddings(tokens)
        owner, noise = getattr(_PASS, "noise", (None, None))
        if owner is not self or noise is None:
            return e
        s = self.init.embed_noise
        return s * noise.to(e.dtype) + math.sqrt(1.0 - s * s) * e

    def one_step(self, x_init: Tensor, labels: Tensor | None, noise: Tensor | None = None) -> Tensor:
        """Logits z_theta [B, N, K] of the one pass from ``x_init``. ``noise`` [B, N, D] are the
        N(0, 1) draws the embedding perturbation scales (None, or ``embed_noise`` 0: none). An
        explicit-timestep student reads the time of the masked share of its input."""
        gamma = (x_init == self.mask_id).double().mean(1)
        _PASS.noise = (self, noise if self.init.embed_noise > 0 else None)
        try:
            return self(x_init, labels, self.time_input(gamma, len(x_init), x_init.device))
        finally:
            _PASS.noise = (None, None)

    def check_teacher(self, teacher: MaskedTransformer, where: str = "") -> None:
        """Refuse a generator other than the one this student was distilled from."""
        if asdict(teacher.config) != asdict(self.config):
            raise MaskgenError(f"one-step student{where} has another layout than this generator (its config differs): it was distilled from another model")
        if self.teacher_sha256 and teacher.sha256 and self.teacher_sha256 != teacher.sha256:
            raise MaskgenError(
                f"one-step student{where} was distilled from generator sha256 {self.teacher_sha256[:12]}..., "
                f"not from this one ({teacher.sha256[:12]}...): distil one for it with `maskgen distill`"
            )

    # -- persistence: ``save`` comes from Checkpointable -----------------------------------
    def checkpoint_record(self) -> dict:
        """The teacher's hash, always (without it a load could not refuse another teacher), and
        the initialisation the sampler must reproduce."""
        if not self.teacher_sha256:
            raise MaskgenError("cannot save a one-step student without the sha256 of its teacher")
        return {"teacher_sha256": self.teacher_sha256, "init": asdict(self.init)}

    def restore(self, record: dict, base: MaskedTransformer | None, where: str) -> None:
        """The teacher's sha256 and the initialisation it was distilled with, checked against the
        teacher ``base`` (required)."""
        if base is None:
            raise MaskgenError(f"a one-step student{where} loads onto the generator it was distilled from: load(folder, teacher)")
        self.teacher_sha256 = record.get("teacher_sha256")
        init = record.get("init", {})
        name = f"{where.removeprefix(' in ')}/one-step.json"
        if not isinstance(init, dict):
            raise MaskgenError(f"{name}: init must be a mapping, got {init!r}")
        try:
            self.init = StudentInit(**init)
        except TypeError as e:
            raise MaskgenError(f"{name}: bad init: {e}") from None
        self.check_teacher(base, where)
