"""Joint image+segmentation training: the unified loss of Discrete Interpolants (Hu & Ommer
2025, Sec. 3.4, Eq. 5) over z = x (+) y,

    L = E_{(x, y), t} w(t) sum_{i masked in z_t} -log p(z^i | z_t)

with the pieces of the masked objective (``masking.py``: schedule, masking distribution,
weighting, t_min) applied per modality, and three choices of its own:

- ``independent_times``: one t for both modalities (003 Eq. 5, "we share the mask schedule
  between two different modalities"), or a t drawn per modality (what 003's appendix found
  best). With one t each modality still gets its own mask of gamma(t) of its positions.
- ``cond_drop``: condition dropout per modality: each modality is, with this probability,
  fully masked (t = 1), the null condition of 003 Eq. 6, so classifier-free guidance works
  both ways (image->segmentation and segmentation->image). Its tokens are then predicted
  unconditionally, so they stay in the loss.
- ``modality_given``: with this probability one modality (either, with equal chance) is
  kept whole (t = 0, no masked position, nothing to predict): the conditional case the
  sampler meets with a given modality, which the count masking (at least one masked
  position) never produces otherwise.

The weight w(t) of a masked token is its own modality's; ``one`` divides by the whole
sequence's N, as the single-modality objective does (Eq. 5 as printed). ``batch-masked-mean``
is the loss of Discrete Interpolants' code instead: each modality's mean cross-entropy over
its own masked tokens in the batch, summed over the modalities (so each modality weighs the
same whatever its size and masked count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MaskgenError
from ..validate import flag, number
from .context import StepContext
from .masking import MaskedObjective, MaskedObjectiveConfig, mask_positions


@dataclass
class JointObjectiveConfig(MaskedObjectiveConfig):
    independent_times: bool = False
    modality_given: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        o = "JointObjectiveConfig"
        flag("independent_times", self.independent_times, o)
        self.modality_given = number("modality_given", self.modality_given, 0.0, 1.0, owner=o)
        if self.batch_time:
            raise MaskgenError("--batch-time draws one t per batch; a joint model draws t per image (and per modality with --independent-times)")
        if self.weighting in ("per-image", "all-tokens"):
            raise MaskgenError(f"the {self.weighting} weighting is single-modality; with two modalities use one, elbo or batch-masked-mean")
        if self.coupling:
            raise MaskgenError("--coupling keeps random tokens clean; a joint model keeps a whole modality clean instead (--modality-given)")


class JointObjective(MaskedObjective):
    """Eq. 5 for a ``JointTransformer``; ``model(tokens, labels, t)`` with t [B, N] per token
    for an explicit-timestep model."""

    def __init__(self, config: JointObjectiveConfig, slices: dict[str, slice], mask_id: int, timestep_input: bool):
        super().__init__(config, null_class=0)
        self.slices = list(slices.values())
        self.mask_id = mask_id
        self.timestep_input = timestep_input

    def corrupt_joint(self, n: int, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """(t [B, N] float64, a time per token (its modality's), mask [B, N] bool)."""
        c = self.config
        shared = self.sample_times(ctx)
        times = torch.empty(len(shared), n, dtype=torch.float64)
        mask = torch.empty(len(shared), n, dtype=torch.bool)
        given_draw, given_pick = ctx.draw(torch.rand, dtype=torch.float64), ctx.draw(torch.rand, dtype=torch.float64)
        given = given_draw < c.modality_given
        for m, where in enumerate(self.slices):
            t = self.sample_times(ctx) if c.independent_times else shared
            scores = ctx.draw(torch.rand, where.stop - where.start)
            dropped = ctx.draw(torch.rand, dtype=torch.float64) < c.cond_drop
            kept = given & ((given_pick < 0.5) if m == 0 else (given_pick >= 0.5))
            t = torch.where(dropped, 1.0, torch.where(kept, 0.0, t))
            mask[:, where] = mask_positions(self.schedule.gamma(t), scores, c.masking) & ~kept[:, None]
            mask[:, where] |= dropped[:, None]
            times[:, where] = t[:, None]
        return times, mask

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        z0, labels = batch
        b, n = z0.shape
        times, mask = self.corrupt_joint(n, ctx)
        mask = mask.to(z0.device)
        inputs = torch.where(mask, torch.full_like(z0, self.mask_id), z0)
        t_in = times.float().to(z0.device) if self.timestep_input else None
        logits = model(inputs, torch.zeros_like(labels), t_in)
        ce = F.cross_entropy(logits.float().reshape(b * n, -1), z0.reshape(-1), reduction="none", label_smoothing=self.config.label_smoothing).view(b, n)
        if self.config.weighting == "batch-masked-mean":
            loss = sum((ce[:, where] * mask[:, where]).sum() / mask[:, where].sum().clamp_min(1) for where in self.slices)
        else:
            # elbo: zero where unmasked first: w(0) is capped but large, and 0 * w must stay 0 in the gradient
            w = torch.where(mask, self.schedule.elbo_weight(times.to(z0.device)).float(), 0.0) if self.config.weighting == "elbo" else mask.float()
            loss = (ce * w).sum(1).div(n).mean()
        metrics = {"loss": loss.item(), "mask_frac": mask.float().mean().item()}
        with torch.no_grad():
            hit = logits.argmax(-1) == z0
            for name, where in zip(("acc_image", "acc_seg"), self.slices):
                metrics[name] = ((hit[:, where] & mask[:, where]).sum() / mask[:, where].sum().clamp_min(1)).item()
        return loss, metrics


def train_joint(
    data: str,
    tokenizer_dir: str | Path,
    out: str | Path,
    gen,
    objective: JointObjectiveConfig,
    train,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
):
    """Train a joint image+segmentation generator (``models/joint.py``) on paired data
    (``data/segmentation.py``): images through the VQ tokenizer in ``tokenizer_dir``, maps
    through a segmentation tokenizer on the same grid. ``gen`` is a ``GeneratorConfig`` of the
    transformer's size; grid, vocabulary and time schedule are set here."""
    from ..data import TokenDataset
    from ..data.segmentation import open_segmentation
    from ..models.joint import JointConfig, JointTransformer
    from ..tokenizers import KLTokenizer, copy_tokenizer, load_tokenizer
    from ..tokenizers.segmentation import SegmentationTokenizer, SegmentationTokenizerConfig
    from .trainer import Trainer, check_until, resolve_device, seeded

    check_until(until)
    resolve_device(train.device)
    tokenizer = load_tokenizer(tokenizer_dir)
    if isinstance(tokenizer, KLTokenizer):
        raise MaskgenError(f"{tokenizer_dir} holds a KL tokenizer (continuous latents); a joint model needs a VQ tokenizer's codes")
    size = tokenizer.config.image_size
    pairs = open_segmentation(data, size, tokenizer.config.channels)
    h, w = tokenizer.grid
    if size % h or size // h != size // w:
        raise MaskgenError(f"the image tokenizer's grid {tokenizer.grid} does not tile {size}x{size} images in square patches")
    seg_tok = SegmentationTokenizer(SegmentationTokenizerConfig(pairs.num_labels, size, size // h))
    codes, labels = [], []
    with torch.no_grad():
        for start in range(0, len(pairs), 256):
            images, maps = pairs.batch(torch.arange(start, min(start + 256, len(pairs))))
            codes.append(tokenizer.encode(images).reshape(len(images), -1))
            labels.append(seg_tok.encode(maps).reshape(len(maps), -1))
    k = tokenizer.codebook_size
    joint = torch.cat([torch.cat(codes), torch.cat(labels) + k], dim=1)
    dataset = TokenDataset.from_tensors(joint.view(len(joint), 2 * h, w), torch.zeros(len(joint), dtype=torch.long), k + pairs.num_labels, ["any"])
    fields = {f: getattr(gen, f) for f in ("width", "depth", "heads", "mlp_ratio", "timestep_input", "attn_dropout", "proj_dropout", "mlp_dropout")}
    config = JointConfig(**fields, grid=(2 * h, w), codebook_size=k + pairs.num_labels, num_classes=1,
                         time_schedule=objective.schedule, image_codes=k, image_tokens=h * w)
    model = seeded(train.seed, lambda: JointTransformer(config))
    loss = JointObjective(objective, config.slices(), config.mask_id, config.timestep_input)
    record = {"data": data, "objective": asdict(objective), "modalities": ["image", "segmentation"], "label_names": pairs.label_names}
    trainer = Trainer(model, loss, dataset, train, out, save_model=lambda m, folder: m.save(folder, **record), record=record, tokens_per_item=config.num_tokens)
    copy_tokenizer(tokenizer_dir, out)
    seg_tok.save(out)
    trainer.fit(resume=resume, progress=progress, until=until)
    return model
