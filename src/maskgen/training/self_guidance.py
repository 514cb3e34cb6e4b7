"""Fine-tuning a TOAST module for self-guidance on a frozen generator (000 Sec. 3.2, Eq. 7).

``task="aux"``, error-token correction (the paper's L_aux): per image a time t with the
generator's masking schedule; of the tokens left visible, ``error_rate`` (30%, at least
one) are overwritten with tokens the frozen generator draws from a blank canvas. The
first pass sees the corrupted tokens z_t; the second pass (blank canvas + top-down
features) is trained with cross-entropy (label smoothing 0.1) to give the clean tokens
at the overwritten positions:

    L_aux = -E_{x, t} sum_{i overwritten} log p_theta(x_0^i | H_phi(z_t), c)

The loss positions follow the authors' code: the overwritten (replaced visible) tokens.
The printed Eq. 7 sums over the masked positions of z_t instead; with that choice the
task would be ordinary masked prediction, which is the ``mask`` ablation below.

``task="mask"`` is 000 Table 2's ablation "ft. w/ L_mask": no corruption, the loss is the
plain masked-token loss on the masked positions. Both add the TOAST regulariser
(``reg_weight`` x sum of the decoders' reconstruction MSEs). Only the module trains; the
generator is frozen and never changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import absolute_spec
from ..devices import resolve_device
from ..errors import MaskgenError
from ..models.toast import ToastModule
from ..models.transformer import MaskedTransformer
from ..sampling.draw import inverse_cdf
from ..schedules import get_schedule
from ..validate import number, text
from .context import StepContext
from .generator import generator_data
from .masking import mask_and_drop
from .trainer import Trainer, TrainConfig, seeded

TASKS = ("aux", "mask")


@dataclass
class SelfGuidanceObjectiveConfig:
    task: str = "aux"
    schedule: str = "cosine"
    error_rate: float = 0.3
    label_smoothing: float = 0.1
    reg_weight: float = 0.1
    cond_drop: float = 0.1  # so the unconditional anchor is trained too

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise MaskgenError(f"unknown self-guidance task {self.task!r}; choose from {', '.join(TASKS)}")
        o = "SelfGuidanceObjectiveConfig"
        get_schedule(text("schedule", self.schedule, o))
        self.error_rate = number("error_rate", self.error_rate, 0.0, 1.0, lo_open=True, owner=o)
        self.label_smoothing = number("label_smoothing", self.label_smoothing, 0.0, 1.0, hi_open=True, owner=o)
        self.reg_weight = number("reg_weight", self.reg_weight, 0.0, owner=o)
        self.cond_drop = number("cond_drop", self.cond_drop, 0.0, 1.0, owner=o)


def choose_visible(visible: Tensor, rate: float, scores: Tensor) -> Tensor:
    """``rate`` of each row's visible positions (at least one if any), the lowest scores."""
    count = visible.sum(1)
    k = torch.where(count > 0, torch.clamp(torch.floor(rate * count.double()).long(), min=1), 0)
    ranks = scores.masked_fill(~visible, float("inf")).argsort(1).argsort(1)
    return ranks < k[:, None]


class SelfGuidanceObjective:
    """Loss of a ``ToastModule`` (the model the trainer optimises) on a frozen ``generator``."""

    def __init__(self, config: SelfGuidanceObjectiveConfig, generator: MaskedTransformer):
        self.config = config
        self.schedule = get_schedule(config.schedule)
        self.generator = generator.eval().requires_grad_(False)

    @torch.no_grad()
    def corrupt(self, tokens: Tensor, labels: Tensor, mask: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """z_t and the positions to learn from: overwritten ones (aux) or masked ones (mask)."""
        g = self.generator
        x_t = torch.where(mask, torch.full_like(tokens, g.mask_id), tokens)
        if self.config.task == "mask":
            return x_t, mask
        n = tokens.shape[1]
        blank = torch.full_like(tokens, g.mask_id)
        logp = g(blank, labels, g.time_input(1.0, len(tokens), tokens.device)).float().log_softmax(-1)
        draws = inverse_cdf(logp, ctx.draw(torch.rand, n).to(tokens.device))
        errors = choose_visible(~mask, self.config.error_rate, ctx.draw(torch.rand, n).to(tokens.device))
        return torch.where(errors, draws, x_t), errors

    def __call__(self, module: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        tokens, labels = batch
        c, g = self.config, self.generator
        b, n = tokens.shape
        t, mask, labels = mask_and_drop(tokens, labels, ctx, self.schedule, c.cond_drop, g.null_class)
        # the generator reads the time of its own schedule, not of the fine-tuning schedule
        t_in = g.time_input(self.schedule.gamma(t), b, tokens.device)

        z, target = self.corrupt(tokens, labels, mask, ctx)
        with torch.no_grad():
            first = g.run(z, labels, t_in, hidden=True, layer_io=True)
        top_down = module(first.hidden, labels)
        logits = g(torch.full_like(tokens, g.mask_id), None, t_in, top_down=top_down).float()
        ce = F.cross_entropy(logits.reshape(b * n, -1), tokens.reshape(-1), reduction="none", label_smoothing=c.label_smoothing).view(b, n)
        count = target.sum().clamp_min(1)
        task_loss = (ce * target).sum() / count
        toast = getattr(module, "module", module)  # the ToastModule itself under DistributedDataParallel
        reg = toast.regulariser(first.layer_io)
        loss = task_loss + c.reg_weight * reg
        with torch.no_grad():
            acc = ((logits.argmax(-1) == tokens) & target).sum() / count
        return loss, {"loss": loss.item(), "task": task_loss.item(), "reg": reg.item(), "acc": acc.item()}


def finetune_self_guidance(
    model_dir: str | Path,
    out: str | Path,
    objective: SelfGuidanceObjectiveConfig,
    train: TrainConfig,
    data: str | None = None,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> tuple[ToastModule, dict]:
    """Fine-tune a TOAST module on the frozen generator in ``model_dir`` (000 Sec. 3.2-3.3).

    ``data`` defaults to the data the generator was trained on. Returns the module and its
    parameter counts.
    """
    model_dir = Path(model_dir)
    generator = MaskedTransformer.load(model_dir).to(resolve_device(train.device))
    data, dataset, data_fingerprint = generator_data(model_dir, data, progress)
    if dataset.num_classes != generator.config.num_classes:
        raise MaskgenError(f"data {data} has {dataset.num_classes} classes, the generator {generator.config.num_classes}")
    module = seeded(train.seed, lambda: ToastModule.for_generator(generator))
    counts = {"module": sum(p.numel() for p in module.parameters()), "generator": sum(p.numel() for p in generator.parameters())}
    counts["trainable_fraction"] = counts["module"] / (counts["module"] + counts["generator"])
    record = {
        "data": absolute_spec(data), "data_fingerprint": data_fingerprint, "generator": str(model_dir.resolve()),
        "generator_sha256": generator.sha256, "objective": asdict(objective), "parameters": counts,
    }
    trainer = Trainer(
        module,
        SelfGuidanceObjective(objective, generator),
        dataset,
        train,
        out,
        save_model=lambda m, folder: m.save(folder, **record),
        record=record,
        tokens_per_item=generator.config.num_tokens,
    )
    trainer.fit(resume=resume, progress=progress, until=until)
    return module, counts
