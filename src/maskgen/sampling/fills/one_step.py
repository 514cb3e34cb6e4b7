"""Di[M]O's one-step student as a fill rule (Zhu, Wang, Lathuiliere and Kalogeiton 2025,
"Di[M]O: Distilling Masked Diffusion Models into One-step Generator").

At the first step the student, not the generator, predicts: from Di[M]O's initial state
(the positions to fill hold [MASK] for a share r_init and random codes elsewhere, the rest
as given; ``models/one_step.py``) it gives logits in one pass, and the token draw draws a
candidate at every masked position. With one step that is the sample: NFE 1. With T > 1
steps the rule is MaskGIT's confidence rule from there on (``ConfidenceFill``): the first
step keeps the student's most confident tokens so that the schedule's count stays masked,
and the generator (with any guidance) fills the rest over the T - 1 further steps: the
student followed by teacher refinement, NFE 1 + (T - 1) x the generator's rows per step.

Given tokens stay as given (inpainting, outpainting): the student sees them in its input
and the rule only places candidates at masked positions. Guidance does not apply to the
student's pass (it was distilled from the guided teacher); it applies to the teacher steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from torch import Tensor

from ...errors import MaskgenError
from ...models.one_step import OneStepStudent, initial_tokens
from ..counts import check_counts
from ..draw import Noise, normal, uniform
from ..fill import Step
from ..registry import FILLS, PieceSpec, finite, option
from .confidence import ConfidenceFill, ConfidenceSpec, annealing_field, check_confidence, choice_temperature_field, counts_field


@FILLS.register
@dataclass
class OneStepSpec(PieceSpec):
    """Di[M]O's one-step student (Zhu et al. 2025) in place of the generator's first pass (NFE 1
    at one step); any further step is the confidence rule on the generator."""

    kind: ClassVar[str] = "one-step"
    about: ClassVar[str] = "a Di[M]O student from maskgen distill"
    rank: ClassVar[float] = 5
    menu: ClassVar[float] = 5
    search: ClassVar[dict] = ConfidenceSpec.search  # the steps after the student's are the confidence rule's
    search_rank: ClassVar[float] = 5
    default_steps: ClassVar[int | None] = 1
    student: str | None = field(default=None, metadata=option("student", "the Di[M]O student's folder (default: MODEL/one-step)"))
    r_init: float | None = field(default=None, metadata=option("student_r_init", "[MASK] share of the student's input (default: the one it was distilled with)", type=float))
    choice_temperature: float = choice_temperature_field()  # the confidence rule's, for the steps after the student's
    annealing: str = annealing_field()
    counts: str = counts_field()

    def __post_init__(self) -> None:
        if self.r_init is not None:
            finite("one-step r_init", self.r_init, 0.0)
            if self.r_init > 1.0:
                raise MaskgenError(f"one-step r_init must be <= 1, got {self.r_init!r}")
        check_confidence(self.choice_temperature, self.annealing, self.counts)  # the confidence rule's checks

    def check_run(self, steps: int, schedule: str) -> None:
        check_counts(self.counts, schedule, steps)

    def build(self, source):
        return OneStepFill(source.one_step_student(self.student), self.r_init, self.choice_temperature, self.annealing, self.counts)


class OneStepFill(ConfidenceFill):
    name = "one-step"

    def __init__(self, student: OneStepStudent, r_init: float | None, choice_temperature: float, annealing: str, counts: str = "maskgit"):
        super().__init__(choice_temperature, annealing, counts)
        self.student = student
        self.init = student.init if r_init is None else dataclasses.replace(student.init, r_init=r_init)

    @property
    def discrete_only(self) -> bool:
        return True  # the student predicts codes of the generator it was distilled from

    def check(self, model) -> None:
        if model.continuous:
            raise MaskgenError("the one-step fill rule needs a discrete-token generator (a Di[M]O student predicts codes)")
        self.student.check_teacher(model.network)

    def predict(self, model, x: Tensor, labels: Tensor, step: Step, generator: Noise) -> tuple[Tensor, int] | None:
        """The student's logits at the first step (its input drawn from ``generator``: the
        [MASK] scores, the random codes, then the embedding noise if any); None later."""
        if step.index != 0:
            return None
        b, n = x.shape
        where = model.masked(x)
        scores, codes = uniform((b, n), generator, x.device), uniform((b, n), generator, x.device)
        x_init = initial_tokens(x, where, self.init, model.mask_id, model.codebook_size, scores, codes)
        noise = normal((b, n, self.student.config.width), generator, x.device) if self.init.embed_noise > 0 else None
        return self.student.one_step(x_init, labels, noise).float(), b

    def settings(self) -> dict:
        return {**super().settings(), "fill": self.name, "r_init": self.init.r_init, "student_sha256": self.student.sha256}
