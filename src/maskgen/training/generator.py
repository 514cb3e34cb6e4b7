"""Training a class-conditional generator (``train_generator``) and the data every trainer on
tokens reads: a token or latent cache as it is, or image data encoded once in memory
(``training_data``), and for a verb on a trained generator the data it records (``generator_data``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint import load_json
from ..data import LatentDataset, TokenDataset, absolute_spec, fingerprint, is_token_spec, open_dataset
from ..devices import resolve_device
from ..errors import MaskgenError
from ..models.continuous import ContinuousConfig, ContinuousGenerator
from ..models.transformer import GeneratorConfig, MaskedTransformer
from ..progress import progress as progress_bar
from ..tokenizers import KLTokenizer, VQTokenizer, copy_tokenizer, load_tokenizer
from .continuous import MaskedLatentObjective
from .masking import MaskedObjectiveConfig, MaskedTokenObjective
from .trainer import Trainer, TrainConfig, check_until, seeded


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


def generator_data(model_dir: Path, data: str | None, progress: bool = True) -> tuple[str, TokenDataset | LatentDataset, str]:
    """(spec, dataset, fingerprint) of what a verb on a trained generator (finetune-sg,
    train-critic) trains on: ``data`` if given, else the data ``model_dir/generator.json``
    records, refused in one line when it no longer holds what the generator was trained on.

    A folder written since data identities exist records its data as an absolute spec plus
    its fingerprint, so it resolves the same from any working directory and a changed or
    replaced dataset is caught. An older folder records the spec as it was typed (maybe a path
    relative to where ``train`` ran) and no fingerprint: it is resolved as before, relative to
    the current working directory, and cannot be checked."""
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
