"""Token-Critic training against a frozen generator (004 Algorithm 1).

Per image a time t ~ U(0, 1); ``ceil(N gamma(t))`` tokens (cosine schedule) of the real grid
are masked; the frozen generator fills them with one draw from its prediction; the critic
sees the filled grid and learns with binary cross-entropy which tokens are real (the
unmasked ones) and which were filled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import mannwhitneyu
from torch import Tensor, nn

from ..checkpoint import save_json
from ..data import TokenDataset, absolute_spec
from ..devices import resolve_device
from ..errors import MaskgenError
from ..models.critic import TokenCritic
from ..models.transformer import MaskedTransformer
from ..sampling.draw import inverse_cdf
from ..schedules import get_schedule
from ..validate import integer, number, text
from .context import StepContext
from .generator import generator_data
from .masking import mask_and_drop
from .trainer import Trainer, TrainConfig, check_until, seeded


@dataclass
class CriticObjectiveConfig:
    schedule: str = "cosine"
    draw_temperature: float = 1.0  # temperature of the generator's fills
    cond_drop: float = 0.1  # so the critic also scores unconditional samples

    def __post_init__(self) -> None:
        get_schedule(text("schedule", self.schedule, "CriticObjectiveConfig"))
        self.draw_temperature = number("draw_temperature", self.draw_temperature, 0.0, lo_open=True, owner="CriticObjectiveConfig")
        self.cond_drop = number("cond_drop", self.cond_drop, 0.0, 1.0, owner="CriticObjectiveConfig")


class CriticObjective:
    """Loss of a ``TokenCritic`` (the model the trainer optimises) on a frozen ``generator``."""

    def __init__(self, config: CriticObjectiveConfig, generator: MaskedTransformer):
        self.config = config
        self.schedule = get_schedule(config.schedule)
        self.generator = generator.eval().requires_grad_(False)

    @torch.no_grad()
    def fill(self, tokens: Tensor, labels: Tensor, mask: Tensor, uniforms: Tensor, gamma: Tensor) -> Tensor:
        """The real grid with the masked positions replaced by generator draws (one per
        position); ``gamma`` [B] is the masked fraction, which the generator turns into its own time."""
        g = self.generator
        x_t = torch.where(mask, torch.full_like(tokens, g.mask_id), tokens)
        t = g.time_input(gamma, len(tokens), tokens.device)
        logp = (g(x_t, labels, t).float() / self.config.draw_temperature).log_softmax(-1)
        return torch.where(mask, inverse_cdf(logp, uniforms), tokens)

    def corrupt(self, tokens: Tensor, labels: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor, Tensor]:
        """(filled grid, filled positions, labels after condition dropout)."""
        t, mask, labels = mask_and_drop(tokens, labels, ctx, self.schedule, self.config.cond_drop, self.generator.null_class)
        uniforms = ctx.draw(torch.rand, tokens.shape[1]).to(tokens.device)
        return self.fill(tokens, labels, mask, uniforms, self.schedule.gamma(t)), mask, labels

    def __call__(self, critic: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        tokens, labels = batch
        filled, mask, labels = self.corrupt(tokens, labels, ctx)
        logits = critic(filled, labels).float()
        loss = F.binary_cross_entropy_with_logits(logits, (~mask).float())
        with torch.no_grad():
            acc = ((logits > 0) == ~mask).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item()}


def auc(scores_real: np.ndarray, scores_fake: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a real token > score of a filled one)."""
    if len(scores_real) == 0 or len(scores_fake) == 0:
        raise MaskgenError("AUC needs both real and filled tokens")
    return float(mannwhitneyu(scores_real, scores_fake).statistic / (len(scores_real) * len(scores_fake)))


@torch.no_grad()
def critic_auc(critic: nn.Module, objective: CriticObjective, tokens: Tensor, labels: Tensor, seed: int = 12345, batch_size: int = 256) -> float:
    """AUC of ``critic`` on fresh generator fills of ``tokens`` (not seen in training)."""
    device = next(critic.parameters()).device
    real, fake = [], []
    for start in range(0, len(tokens), batch_size):
        x, y = tokens[start : start + batch_size].to(device), labels[start : start + batch_size].to(device)
        ctx = StepContext(step=start, rng=torch.Generator().manual_seed(seed + start), rows=slice(0, len(x)), global_batch=len(x))
        filled, mask, y = objective.corrupt(x, y, ctx)
        s = critic(filled, y).float()
        real.append(s[~mask].cpu())
        fake.append(s[mask].cpu())
    return auc(torch.cat(real).numpy(), torch.cat(fake).numpy())


def train_critic(
    model_dir: str | Path,
    out: str | Path,
    objective: CriticObjectiveConfig,
    train: TrainConfig,
    data: str | None = None,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    heldout: int = 1000,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> tuple[TokenCritic, dict]:
    """Train a Token-Critic against the frozen generator in ``model_dir`` (004 Algorithm 1).

    The last ``heldout`` items of the data are kept out of training; the critic's AUC on
    fresh generator fills of them is returned and saved with the checkpoint.
    """
    integer("heldout", heldout, 1)  # before the generator fills anything: 0 or -5 is a bad option, not a small dataset
    check_until(until)
    model_dir = Path(model_dir)
    device = resolve_device(train.device)
    generator = MaskedTransformer.load(model_dir).to(device)
    critic = seeded(train.seed, lambda: TokenCritic.for_generator(generator, width, depth, heads))  # its config checked before the data is read
    data, dataset, data_fingerprint = generator_data(model_dir, data, progress)
    tokens, labels = dataset.to_tensors()
    if len(tokens) <= heldout + train.batch_size:
        raise MaskgenError(f"--heldout {heldout}: data {data} has {len(tokens)} items, too few to hold out {heldout} and train on batches of {train.batch_size}")
    train_set = TokenDataset.from_tensors(tokens[:-heldout], labels[:-heldout], dataset.codebook_size, dataset.class_names)
    loss = CriticObjective(objective, generator)
    record = {
        "data": absolute_spec(data), "data_fingerprint": data_fingerprint, "generator": str(model_dir.resolve()),
        "generator_sha256": generator.sha256, "objective": asdict(objective),
    }
    trainer = Trainer(
        critic, loss, train_set, train, out,
        save_model=lambda m, folder: m.save(folder, **record), record=record, tokens_per_item=generator.config.num_tokens,
    )
    trainer.fit(resume=resume, progress=progress, until=until)
    if trainer.rank != 0 or trainer.step < train.steps:
        return critic, {}
    critic = TokenCritic.load(out).to(device)
    held = tokens[-heldout:].reshape(heldout, -1)
    metrics = {"auc": critic_auc(critic, loss, held, labels[-heldout:]), "heldout": heldout, "steps": train.steps}
    save_json(Path(out) / "metrics.json", metrics)
    return critic, metrics
