"""What each CLI verb does, as plain functions: train a tokenizer, encode a dataset, train a
generator, sample. The CLI only parses options and calls these."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from .checkpoint import save_json
from .data import TokenDataset, encode_dataset, is_token_spec, open_dataset
from .errors import MaskgenError
from .models.transformer import GeneratorConfig, MaskedTransformer
from .pipeline import copy_tokenizer
from .tokenizers import KINDS, KLConfig, KLTokenizer, VQConfig, VQTokenizer, kind_of, load_tokenizer, measure_scale
from .tokenizers.metrics import evaluate_tokenizer
from .training.masking import MaskedObjectiveConfig, MaskedTokenObjective
from .training.trainer import Trainer, TrainConfig, check_until, resolve_device, seeded
from .validate import integer

if TYPE_CHECKING:
    from .models.critic import TokenCritic
    from .models.toast import ToastModule
    from .training.critic import CriticObjectiveConfig
    from .training.self_guidance import SelfGuidanceObjectiveConfig


def train_tokenizer(data: str, out: str | Path, config: VQConfig | KLConfig, train: TrainConfig, resume: bool = False, progress: bool = True, until: int | None = None) -> tuple[VQTokenizer | KLTokenizer, dict]:
    """Train a tokenizer of ``config``'s kind (VQ or KL) on ``data``; return it and its metrics.

    Metrics: reconstruction PSNR, plus codebook usage for VQ. A KL tokenizer's latent
    ``scale`` is measured on the training data afterwards (:func:`measure_scale`), written
    into its checkpoint and reported as ``scale``.
    """
    kind = kind_of(config)
    if isinstance(config, KLConfig) and config.scale != 1.0:
        raise MaskgenError(f"KLConfig.scale is measured after training; train with scale 1.0, not {config.scale}")
    _, model_class, objective_class = KINDS[kind]
    dataset = open_dataset(data, image_size=config.image_size, channels=config.channels)
    model = seeded(train.seed, lambda: model_class(config))
    trainer = Trainer(
        model,
        objective_class(),
        dataset,
        train,
        out,
        save_model=lambda m, folder: m.save(folder),
        record={"data": data, "kind": kind, "tokenizer": asdict(config)},
        tokens_per_item=config.image_size**2,
    )
    trainer.fit(resume=resume, progress=progress, until=until)
    if trainer.rank != 0:
        return model, {}
    model = model_class.load(out)
    extra = {}
    if isinstance(model, KLTokenizer):
        model.config.scale = measure_scale(model, dataset)
        model.save(out)
        model = KLTokenizer.load(out)
        extra = {"scale": model.config.scale}
    metrics = {**evaluate_tokenizer(model, dataset, progress=progress), **extra}
    save_json(Path(out) / "metrics.json", {"data": data, "steps": train.steps, "kind": kind, **metrics})
    return model, metrics


def encode(tokenizer_dir: str | Path, data: str, out: str | Path, batch_size: int = 256, device: str = "cpu") -> Path:
    """Pre-extract the tokens (VQ) or latents (KL: posterior means, scaled) and labels of ``data``
    into a memory-mapped cache at ``out``."""
    target = resolve_device(device)
    tokenizer = load_tokenizer(tokenizer_dir).to(target)
    dataset = open_dataset(data, image_size=tokenizer.config.image_size, channels=tokenizer.config.channels)
    return encode_dataset(tokenizer, dataset, out, batch_size=batch_size, device=target)


@torch.no_grad()
def token_dataset(data: str, tokenizer: VQTokenizer, batch_size: int = 256, progress: bool = True) -> TokenDataset:
    """Tokens for training: a cache as it is, or image data encoded once, in memory."""
    if is_token_spec(data):
        ds = open_dataset(data)
        if not isinstance(ds, TokenDataset):
            raise MaskgenError(f"{data} holds continuous latents (a KL tokenizer's cache); this needs a token cache of a VQ tokenizer")
        if ds.codebook_size != tokenizer.codebook_size or tuple(ds.grid) != tuple(tokenizer.grid):
            raise MaskgenError(
                f"token cache {data} (codebook {ds.codebook_size}, grid {ds.grid}) was not made by this tokenizer "
                f"(codebook {tokenizer.codebook_size}, grid {tokenizer.grid})"
            )
        return ds
    images = open_dataset(data, image_size=tokenizer.config.image_size, channels=tokenizer.config.channels)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size)
    tokens, labels = [], []
    for x, y in tqdm(loader, desc="encode", disable=not progress):
        tokens.append(tokenizer.encode(x).cpu())
        labels.append(y)
    return TokenDataset.from_tensors(torch.cat(tokens), torch.cat(labels), tokenizer.codebook_size, images.class_names)


def train_generator(
    data: str,
    tokenizer_dir: str | Path,
    out: str | Path,
    gen: GeneratorConfig,
    objective: MaskedObjectiveConfig,
    train: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> MaskedTransformer:
    """Train a class-conditional generator with the unified masked objective (002 Eq. 7).

    The tokenizer is copied into ``out`` only once the trainer is built, so an unusable
    device, batch size or ``until`` leaves nothing behind."""
    check_until(until)
    resolve_device(train.device)
    tokenizer = VQTokenizer.load(tokenizer_dir)
    dataset = token_dataset(data, tokenizer, progress=progress)
    gen.codebook_size, gen.grid, gen.num_classes = tokenizer.codebook_size, tuple(tokenizer.grid), dataset.num_classes
    gen.time_schedule = objective.schedule  # the t an explicit-timestep model is fed in training
    out = Path(out)
    model = seeded(train.seed, lambda: MaskedTransformer(gen))
    record = {"data": data, "objective": asdict(objective), "class_names": list(dataset.class_names)}
    trainer = Trainer(
        model,
        MaskedTokenObjective(objective, gen.mask_id, gen.num_classes, gen.timestep_input),
        dataset,
        train,
        out,
        save_model=lambda m, folder: m.save(folder, **record),
        record=record,
        tokens_per_item=gen.num_tokens,
    )
    copy_tokenizer(tokenizer_dir, out)
    trainer.fit(resume=resume, progress=progress, until=until)
    return model


def finetune_self_guidance(
    model_dir: str | Path,
    out: str | Path,
    objective: "SelfGuidanceObjectiveConfig",
    train: TrainConfig,
    data: str | None = None,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> tuple["ToastModule", dict]:
    """Fine-tune a TOAST module on the frozen generator in ``model_dir`` (000 Sec. 3.2-3.3).

    ``data`` defaults to the data the generator was trained on. Returns the module and its
    parameter counts.
    """
    from .models.toast import ToastModule
    from .training.self_guidance import SelfGuidanceObjective

    model_dir = Path(model_dir)
    generator = MaskedTransformer.load(model_dir).to(resolve_device(train.device))
    data = data or _generator_data(model_dir)
    dataset = token_dataset(data, VQTokenizer.load(model_dir), progress=progress)
    if dataset.num_classes != generator.config.num_classes:
        raise MaskgenError(f"data {data} has {dataset.num_classes} classes, the generator {generator.config.num_classes}")
    module = seeded(train.seed, lambda: ToastModule.for_generator(generator))
    counts = {"module": sum(p.numel() for p in module.parameters()), "generator": sum(p.numel() for p in generator.parameters())}
    counts["trainable_fraction"] = counts["module"] / (counts["module"] + counts["generator"])
    record = {"data": data, "generator": str(model_dir), "objective": asdict(objective), "parameters": counts}
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



def train_critic(
    model_dir: str | Path,
    out: str | Path,
    objective: "CriticObjectiveConfig",
    train: TrainConfig,
    data: str | None = None,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    heldout: int = 1000,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> tuple["TokenCritic", dict]:
    """Train a Token-Critic against the frozen generator in ``model_dir`` (004 Algorithm 1).

    The last ``heldout`` items of the data are kept out of training; the critic's AUC on
    fresh generator fills of them is returned and saved with the checkpoint.
    """
    from .models.critic import TokenCritic
    from .training.critic import CriticObjective, critic_auc

    integer("heldout", heldout, 1)  # before the generator fills anything: 0 or -5 is a bad option, not a small dataset
    check_until(until)
    model_dir = Path(model_dir)
    device = resolve_device(train.device)
    generator = MaskedTransformer.load(model_dir).to(device)
    data = data or _generator_data(model_dir)
    dataset = token_dataset(data, VQTokenizer.load(model_dir), progress=progress)
    tokens, labels = dataset.to_tensors()
    if len(tokens) <= heldout + train.batch_size:
        raise MaskgenError(f"data {data} has {len(tokens)} items: too few to hold out {heldout} and train")
    train_set = TokenDataset.from_tensors(tokens[:-heldout], labels[:-heldout], dataset.codebook_size, dataset.class_names)
    critic = seeded(train.seed, lambda: TokenCritic.for_generator(generator, width, depth, heads))
    loss = CriticObjective(objective, generator)
    record = {"data": data, "generator": str(model_dir), "generator_sha256": generator.sha256, "objective": asdict(objective)}
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


def _generator_data(model_dir: Path) -> str:
    from .checkpoint import load_json

    data = load_json(model_dir / "generator.json").get("data")
    if not data:
        raise MaskgenError(f"{model_dir}/generator.json does not say what data it was trained on: pass --data")
    return data
