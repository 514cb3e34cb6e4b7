"""Di[M]O one-step distillation (Zhu, Wang, Lathuiliere and Kalogeiton 2025, "Di[M]O:
Distilling Masked Diffusion Models into One-step Generator"): the objective.

Three networks: the teacher phi (the generator, frozen), the one-step student theta and an
auxiliary model psi, both started from the teacher. One training step is two phases, in
this order (the trainer runs one optimiser per phase, ``Trainer`` with ``phases``):

``student``: x_init from Di[M]O's token initialisation (``models/one_step.py``); the
student's logits z_theta = G_theta(x_init, c); tokens x_theta ~ softmax(z_theta); a forward
masking of x_theta gives x_t (t ~ U(0, 1), ceil(N gamma(t)) positions masked, gamma =
``schedule``). At x_t the teacher (optionally guided, CFG with scale s: uncond +
(1 + s)(cond - uncond)) and the auxiliary model predict p_phi and p_psi per token, and the
student reduces the token-level divergence sum_{i masked} D(p_phi^i || p_psi^i). The draw
x_theta is not differentiable, so the gradient reaches the student through its logits:
with g = dD/dz_psi (the divergence's gradient with respect to the auxiliary model's logits,
which stand for the student's distribution: psi is trained to match it), the student's
logits receive g at the masked positions (zero elsewhere), per image summed over positions
and codes and averaged over the batch. The loss written for it is
0.5 ||z_theta - sg(z_theta - g)||^2 / B (gradient g / B; its value is 0.5 ||g||^2 / B).

``aux``: a fresh sample of the (just updated) student, masked the same way; psi learns the
student's tokens by cross-entropy at the masked positions, the mean over the batch's
masked tokens: the standard masked-token loss with the student's samples as data.

Divergences (``divergence``) and their gradients in the logits z of p_psi = softmax(z):

- ``fkl``, forward KL(p_phi || p_psi) = sum_v p_phi log(p_phi / p_psi); g = p_psi - p_phi;
- ``rkl``, reverse KL(p_psi || p_phi); g = p_psi (log p_psi - log p_phi - KL(p_psi || p_phi));
- ``jeffrey``, the generalized Jeffrey divergence (1 - beta) FKL + beta RKL, g likewise.

The data are class labels only (distillation is data-free): ``ClassLabels`` cycles
through the classes in a permutation per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MaskgenError
from ..models.one_step import INIT_MIXES, OneStepStudent, StudentInit, initial_tokens
from ..models.transformer import MaskedTransformer
from ..sampling.draw import inverse_cdf
from ..sampling.guidance import combine
from ..schedules import get_schedule
from ..validate import flag, number, text
from .context import StepContext
from .masking import mask_positions

DIVERGENCES = ("fkl", "rkl", "jeffrey")
PHASES = ("student", "aux")


PRESETS = Path(__file__).parent / "distill_presets"


def distill_presets() -> tuple[str, ...]:
    """The shipped distillation presets (``distill_presets/<name>.yaml``): the ``distill`` options of
    the authors' code where it differs from the printed method (docs/distill.md lists each)."""
    return tuple(sorted(p.stem for p in PRESETS.glob("*.yaml")))


@dataclass
class DistillConfig:
    r_init: float = 0.6  # share of [MASK] in x_init
    init_mix: str = "count"  # count: exactly round(N r_init) [MASK]; bernoulli: each with probability r_init
    embed_noise: float = 0.0  # Gaussian perturbation of the student's input embeddings (authors' code: 0.1)
    divergence: str = "fkl"
    beta: float = 0.5  # jeffrey only: (1 - beta) FKL + beta RKL
    cfg: float = 0.0  # classifier-free guidance scale s of the teacher (0: unguided)
    schedule: str = "arccos"  # the forward masking of the student's tokens into x_t
    aux_label_smoothing: float = 0.0  # of the auxiliary model's cross-entropy (authors' code: 0.1)
    freeze_embeddings: bool = False  # keep the token, class and position embeddings (and a tied output bias) fixed
    cond_drop: float = 0.0  # share of rows given the null class, so the student also samples unconditionally
    preset: str | None = None  # the distillation preset these values came from (recorded, checked on resume)

    def __post_init__(self) -> None:
        o = "DistillConfig"
        StudentInit.check(self.r_init, self.init_mix, self.embed_noise, o, "init_mix")
        self.r_init, self.embed_noise = float(self.r_init), float(self.embed_noise)
        if text("divergence", self.divergence, o) not in DIVERGENCES:
            raise MaskgenError(f"unknown divergence {self.divergence!r}; choose from {', '.join(DIVERGENCES)}")
        self.beta = number("beta", self.beta, 0.0, 1.0, owner=o)
        if self.divergence != "jeffrey" and self.beta != DistillConfig.beta:
            raise MaskgenError(f"beta weighs the generalized Jeffrey divergence; it has no effect with divergence {self.divergence}")
        self.cfg = number("cfg", self.cfg, 0.0, owner=o)
        get_schedule(text("schedule", self.schedule, o))
        self.aux_label_smoothing = number("aux_label_smoothing", self.aux_label_smoothing, 0.0, 1.0, hi_open=True, owner=o)
        flag("freeze_embeddings", self.freeze_embeddings, o)
        self.cond_drop = number("cond_drop", self.cond_drop, 0.0, 1.0, hi_open=True, owner=o)
        if self.preset is not None:
            if text("preset", self.preset, o) not in distill_presets():
                raise MaskgenError(f"unknown distillation preset {self.preset!r}; choose from {', '.join(distill_presets())}")

    @property
    def init(self) -> StudentInit:
        return StudentInit(self.r_init, self.init_mix, self.embed_noise)


def divergence(teacher_logits: Tensor, aux_logits: Tensor, kind: str, beta: float = 0.5) -> tuple[Tensor, Tensor]:
    """(D [..], g [.., K]): the token-level divergence between p_phi = softmax(teacher_logits)
    and p_psi = softmax(aux_logits) at each position, and its gradient in ``aux_logits``
    (closed forms in the module docstring), both in float32."""
    if kind not in DIVERGENCES:
        raise MaskgenError(f"unknown divergence {kind!r}; choose from {', '.join(DIVERGENCES)}")
    log_phi, log_psi = teacher_logits.float().log_softmax(-1), aux_logits.float().log_softmax(-1)
    phi, psi = log_phi.exp(), log_psi.exp()
    fkl = (phi * (log_phi - log_psi)).sum(-1)
    rkl = (psi * (log_psi - log_phi)).sum(-1)
    g_fkl = psi - phi
    g_rkl = psi * (log_psi - log_phi - rkl[..., None])
    w = {"fkl": 0.0, "rkl": 1.0, "jeffrey": beta}[kind]
    if w == 0.0:
        return fkl, g_fkl
    if w == 1.0:
        return rkl, g_rkl
    return (1.0 - w) * fkl + w * rkl, (1.0 - w) * g_fkl + w * g_rkl


class DistillPair(nn.Module):
    """What the trainer optimises: the student and the auxiliary model (the teacher stays
    outside, in the objective, so it is neither trained nor checkpointed). One ``forward`` so
    that the trainer's wrappers see every call."""

    def __init__(self, student: OneStepStudent, aux: MaskedTransformer):
        super().__init__()
        self.student, self.aux = student, aux

    @classmethod
    def from_teacher(cls, teacher: MaskedTransformer, config: DistillConfig) -> "DistillPair":
        import copy

        student = OneStepStudent.for_teacher(teacher, config.init)
        aux = copy.deepcopy(teacher)
        pair = cls(student, aux).train().requires_grad_(True)
        if config.freeze_embeddings:  # the authors' code fixes them in both networks
            for net in (student, aux):
                frozen = [net.tok_emb.weight, net.cls_emb.weight, net.pos_emb]
                frozen += [net.out_bias] if net.config.output == "tied" else []
                for p in frozen:
                    p.requires_grad_(False)
        return pair

    def forward(self, which: str, tokens: Tensor, labels: Tensor, t: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        if which == "student":
            return self.student.one_step(tokens, labels, noise)
        return self.aux(tokens, labels, t)


class ClassLabels(torch.utils.data.Dataset):
    """The distillation's data: class labels only, ``size`` items cycling through the classes."""

    def __init__(self, num_classes: int, size: int):
        self.labels = torch.arange(size) % num_classes
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: Tensor) -> tuple[Tensor]:
        return (self.labels[indices],)


class DistillObjective:
    """The two phases' losses of a ``DistillPair`` against a frozen ``teacher``."""

    phases = PHASES

    def __init__(self, config: DistillConfig, teacher: MaskedTransformer):
        self.config = config
        self.schedule = get_schedule(config.schedule)
        self.teacher = teacher.eval().requires_grad_(False)

    def parameters(self, pair: nn.Module, phase: str) -> list[nn.Parameter]:
        """The parameters phase ``phase`` updates: the student's, or the auxiliary model's."""
        pair = getattr(pair, "_orig_mod", pair)  # under torch.compile
        net = pair.student if phase == "student" else pair.aux
        return [p for p in net.parameters() if p.requires_grad]

    def labels(self, labels: Tensor, ctx: StepContext) -> Tensor:
        drop = ctx.draw(torch.rand).to(labels.device) < self.config.cond_drop
        return torch.where(drop, torch.full_like(labels, self.teacher.null_class), labels)

    def student_sample(self, pair: nn.Module, labels: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """(z_theta [B, N, K], x_theta [B, N]): one pass of the student from x_init, and a draw."""
        g, c = self.teacher, self.config
        b, n, device = len(labels), g.config.num_tokens, labels.device
        blank = torch.full((b, n), g.mask_id, dtype=torch.long, device=device)
        where = torch.ones_like(blank, dtype=torch.bool)
        x_init = initial_tokens(blank, where, c.init, g.mask_id, g.config.codebook_size, ctx.draw(torch.rand, n), ctx.draw(torch.rand, n))
        noise = ctx.draw(torch.randn, n, g.config.width).to(device) if c.embed_noise > 0 else None
        z = pair("student", x_init, labels, noise=noise).float()
        x = inverse_cdf(z.detach().log_softmax(-1), ctx.draw(torch.rand, n).to(device))
        return z, x

    def forward_mask(self, x: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, mask [B, N], gamma [B]): t ~ U(0, 1), ceil(N gamma(t)) positions of ``x`` masked."""
        t = ctx.draw(torch.rand, dtype=torch.float64)
        gamma = self.schedule.gamma(t)
        mask = mask_positions(gamma, ctx.draw(torch.rand, x.shape[1]), "count").to(x.device)
        return torch.where(mask, torch.full_like(x, self.teacher.mask_id), x), mask, gamma

    @torch.no_grad()
    def teacher_logits(self, x_t: Tensor, labels: Tensor, gamma: Tensor) -> Tensor:
        """The teacher's prediction at x_t, guided with scale ``cfg`` (one batched pass of the
        conditional and unconditional rows, as the sampling loop runs CFG)."""
        g, s = self.teacher, self.config.cfg
        b = len(x_t)
        if s == 0.0:
            return g(x_t, labels, g.time_input(gamma, b, x_t.device)).float()
        rows = torch.cat([x_t, x_t])
        conds = torch.cat([labels, torch.full_like(labels, g.null_class)])
        cond, uncond = g(rows, conds, g.time_input(torch.cat([gamma, gamma]), 2 * b, x_t.device)).float().chunk(2)
        return combine(cond, [uncond], [s])

    def student_loss(self, pair: nn.Module, labels: Tensor, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        z, x = self.student_sample(pair, labels, ctx)
        x_t, mask, gamma = self.forward_mask(x, ctx)
        with torch.no_grad():
            t_in = self.teacher.time_input(gamma, len(x_t), x_t.device)
            d, grad = divergence(self.teacher_logits(x_t, labels, gamma), pair("aux", x_t, labels, t_in), self.config.divergence, self.config.beta)
            grad = torch.where(mask[..., None], grad, 0.0)
        loss = 0.5 * (z - (z - grad).detach()).pow(2).sum() / len(z)
        div = (d * mask).sum() / mask.sum().clamp_min(1)
        return loss, {"loss": loss.item(), "div": div.item(), "mask_frac": mask.float().mean().item()}

    def aux_loss(self, pair: nn.Module, labels: Tensor, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad():
            _, x = self.student_sample(pair, labels, ctx)
        x_t, mask, gamma = self.forward_mask(x, ctx)
        logits = pair("aux", x_t, labels, self.teacher.time_input(gamma, len(x_t), x_t.device)).float()
        loss = masked_cross_entropy(logits, x, mask, self.config.aux_label_smoothing)
        with torch.no_grad():
            acc = ((logits.argmax(-1) == x) & mask).sum() / mask.sum().clamp_min(1)
        return loss, {"aux_loss": loss.item(), "aux_acc": acc.item()}

    def __call__(self, pair: nn.Module, batch: tuple[Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        labels = self.labels(batch[0], ctx)
        if ctx.phase == "student":
            return self.student_loss(pair, labels, ctx)
        if ctx.phase == "aux":
            return self.aux_loss(pair, labels, ctx)
        raise MaskgenError(f"the distillation objective has phases {', '.join(PHASES)}, not {ctx.phase!r}")


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of ``logits`` [B, N, K] on ``targets`` [B, N], the mean over the masked positions."""
    b, n, k = logits.shape
    ce = F.cross_entropy(logits.reshape(b * n, k), targets.reshape(-1), reduction="none", label_smoothing=label_smoothing).view(b, n)
    return (ce * mask).sum() / mask.sum().clamp_min(1)


__all__ = ["DistillConfig", "DistillObjective", "DistillPair", "ClassLabels", "divergence", "masked_cross_entropy", "INIT_MIXES"]
