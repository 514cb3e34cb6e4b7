"""What each CLI verb does, as plain functions: train a tokenizer, encode a dataset, train a
generator, sample. The CLI only parses options and calls these."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from .progress import progress as progress_bar

from .checkpoint import save_json
from .data import LatentDataset, TokenDataset, absolute_spec, encode_dataset, fingerprint, is_token_spec, open_dataset, open_images
from .errors import MaskgenError
from .models.continuous import ContinuousConfig, ContinuousGenerator
from .models.transformer import GeneratorConfig, MaskedTransformer
from .pipeline import copy_tokenizer
from .tokenizers import KINDS, KLConfig, KLTokenizer, VQConfig, VQTokenizer, kind_of, load_tokenizer, measure_scale
from .tokenizers.metrics import evaluate_tokenizer
from .training.continuous import MaskedLatentObjective
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
    dataset = open_images(data, "train-tokenizer", image_size=config.image_size, channels=config.channels)
    model = seeded(train.seed, lambda: model_class(config))
    trainer = Trainer(
        model,
        objective_class(),
        dataset,
        train,
        out,
        save_model=lambda m, folder: m.save(folder),
        record={"data": absolute_spec(data), "data_fingerprint": fingerprint(dataset), "kind": kind, "tokenizer": asdict(config)},
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


def encode(tokenizer_dir: str | Path, data: str, out: str | Path, batch_size: int = 256, device: str = "cpu",
           num_workers: int = 0, flips: bool = False, image_size: int | None = None, restart: bool = False) -> Path:
    """Pre-extract the tokens (VQ) or latents (KL: posterior means, scaled) and labels of ``data``
    into a memory-mapped cache at ``out``, with both horizontal flips if ``flips``; resumable
    (``encode_dataset``). ``image_size`` is a check: the tokenizer's grid fixes it."""
    target = resolve_device(device)
    tokenizer = load_tokenizer(tokenizer_dir).to(target)
    size = tokenizer.config.image_size
    if image_size is not None and image_size != size:
        raise MaskgenError(f"--image-size {image_size}: the tokenizer in {tokenizer_dir} encodes {size}x{size} images (its grid is fixed); omit --image-size")
    # the encode decodes every file in its workers and names a bad one there
    dataset = open_images(data, "encode", image_size=size, channels=tokenizer.config.channels, check_files=False)
    return encode_dataset(tokenizer, dataset, out, batch_size=batch_size, device=target, num_workers=num_workers, flips=flips, restart=restart)


def token_dataset(data: str, tokenizer: VQTokenizer | KLTokenizer, batch_size: int = 256, progress: bool = True) -> TokenDataset | LatentDataset:
    """What a generator trains on: a cache as it is, or image data encoded once, in memory;
    token ids for a VQ tokenizer, latents (posterior means, scaled) for a KL one."""
    return training_data(data, tokenizer, batch_size, progress)[0]


@torch.no_grad()
def training_data(data: str, tokenizer: VQTokenizer | KLTokenizer, batch_size: int = 256, progress: bool = True) -> tuple[TokenDataset | LatentDataset, str]:
    """``token_dataset`` and the fingerprint of what it was made from (``data.fingerprint``
    of the cache, or of the images before encoding: exact bytes, whatever the encoder's float
    arithmetic), which a run records and ``--resume`` compares."""
    continuous = isinstance(tokenizer, KLTokenizer)
    if is_token_spec(data):
        ds = open_dataset(data)
        if isinstance(ds, LatentDataset) != continuous:
            have, need = ("latents of a KL", "tokens of a VQ") if continuous is False else ("tokens of a VQ", "latents of a KL")
            raise MaskgenError(f"{data} holds the {have} tokenizer; this tokenizer needs a cache of the {need} tokenizer")
        mine = (tuple(tokenizer.grid), tokenizer.token_dim if continuous else tokenizer.codebook_size)
        theirs = (tuple(ds.grid), ds.token_dim if continuous else ds.codebook_size)
        if mine != theirs:
            what = "grid, token dim" if continuous else "grid, codebook"
            raise MaskgenError(f"cache {data} ({what} {theirs}) was not made by this tokenizer ({what} {mine})")
        return ds, fingerprint(ds)
    images = open_dataset(data, image_size=tokenizer.config.image_size, channels=tokenizer.config.channels)
    source = fingerprint(images)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size)
    encoded, labels = [], []
    with torch.no_grad():
        for x, y in progress_bar(loader, desc="encode", disable=not progress):
            encoded.append(tokenizer.encode(x).cpu())
            labels.append(y)
    if continuous:
        h, w = tokenizer.grid
        latents = torch.cat(encoded).view(-1, h, w, tokenizer.token_dim)
        return LatentDataset.from_tensors(latents, torch.cat(labels), images.class_names, scale=tokenizer.scale), source
    return TokenDataset.from_tensors(torch.cat(encoded), torch.cat(labels), tokenizer.codebook_size, images.class_names), source


def train_generator(
    data: str,
    tokenizer_dir: str | Path,
    out: str | Path,
    gen: GeneratorConfig | ContinuousConfig,
    objective: MaskedObjectiveConfig,
    train: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    until: int | None = None,
) -> MaskedTransformer | ContinuousGenerator:
    """Train a class-conditional generator with the unified masked objective (eMIGM Eq. 7):
    over discrete tokens (``GeneratorConfig``, a VQ tokenizer; cross-entropy) or continuous
    latents (``ContinuousConfig``, a KL tokenizer; the diffusion head's loss, eMIGM Sec. 5.2).

    The tokenizer is copied into ``out`` only once the trainer is built, so an unusable
    device, batch size or ``until`` leaves nothing behind."""
    check_until(until)
    resolve_device(train.device)
    tokenizer = load_tokenizer(tokenizer_dir)
    continuous = isinstance(gen, ContinuousConfig)
    if continuous != isinstance(tokenizer, KLTokenizer):
        kind = "a KL tokenizer (continuous latents)" if isinstance(tokenizer, KLTokenizer) else "a VQ tokenizer (discrete codes)"
        raise MaskgenError(f"{tokenizer_dir} holds {kind}; a {'continuous' if continuous else 'discrete'}-token generator needs the other kind")
    if continuous and objective.label_smoothing:  # before the data is encoded
        raise MaskgenError("label_smoothing applies to cross-entropy over codes, not to the diffusion head's loss")
    dataset, data_fingerprint = training_data(data, tokenizer, progress=progress)
    gen.grid, gen.num_classes = tuple(tokenizer.grid), dataset.num_classes
    gen.time_schedule = objective.schedule  # the t an explicit-timestep model is fed in training
    if continuous:
        gen.token_dim = tokenizer.token_dim
        model = seeded(train.seed, lambda: ContinuousGenerator(gen))
        loss = MaskedLatentObjective(objective, gen.num_classes, gen.timestep_input)
    else:
        gen.codebook_size = tokenizer.codebook_size
        model = seeded(train.seed, lambda: MaskedTransformer(gen))
        loss = MaskedTokenObjective(objective, gen.mask_id, gen.num_classes, gen.timestep_input)
    out = Path(out)
    record = {"data": absolute_spec(data), "data_fingerprint": data_fingerprint, "objective": asdict(objective), "class_names": list(dataset.class_names)}
    trainer = Trainer(
        model, loss, dataset, train, out,
        save_model=lambda m, folder: m.save(folder, **record), record=record, tokens_per_item=gen.num_tokens,
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


def generator_data(model_dir: Path, data: str | None, progress: bool = True) -> tuple[str, TokenDataset | LatentDataset, str]:
    """(spec, dataset, fingerprint) of what a verb on a trained generator (finetune-sg,
    train-critic) trains on: ``data`` if given, else the data ``model_dir/generator.json``
    records, refused in one line when it no longer holds what the generator was trained on.

    A folder written since data identities exist records its data as an absolute spec plus
    its fingerprint, so it resolves the same from any working directory and a changed or
    replaced dataset is caught. An older folder records the spec as it was typed (maybe a path
    relative to where ``train`` ran) and no fingerprint: it is resolved as before, relative to
    the current working directory, and cannot be checked."""
    from .checkpoint import load_json

    expected = None
    if data is None:
        record = load_json(model_dir / "generator.json")
        data, expected = record.get("data"), record.get("data_fingerprint")
        if not data or not isinstance(data, str):
            raise MaskgenError(f"{model_dir}/generator.json does not say what data it was trained on: pass --data")
    dataset, found = training_data(data, load_tokenizer(model_dir), progress=progress)
    if expected is not None and found != expected:
        raise MaskgenError(
            f"{model_dir}/generator.json records its training data as {data} with fingerprint {str(expected)[:12]}..., "
            f"but {data} now holds other data (fingerprint {found[:12]}...); pass --data with the data to train on"
        )
    return data, dataset, found
