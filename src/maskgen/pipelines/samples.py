"""What a sampling run leaves in its folder: a grid, every sample as arrays (``samples.npz``) and
``samples.json`` (the settings and the spec that replay them); for a joint model also each
image and label map as a PNG."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ..checkpoint import atomic_write, save_arrays, save_json
from ..images import class_grid_order, save_grid
from ..sampling.loop import SampleResult


def masked_per_step_record(result: SampleResult) -> list[int] | list[list[int]]:
    """The masked count after each step: one list when every image has the same, else one
    list per image (what samples.json records, so a user sees which schedule ran)."""
    per_image = [list(col) for col in zip(*result.masked_per_step)] if result.masked_per_step else []
    if per_image and all(row == per_image[0] for row in per_image):
        return per_image[0]
    return per_image


def _record(path: Path, num: int, result: SampleResult, extra: dict | None) -> Path:
    save_json(path, {"num": num, "nfe": result.nfe, "settings": result.settings, "masked_per_step": masked_per_step_record(result), **(extra or {})})
    return path


def save_samples(out: str | Path, images: Tensor, result: SampleResult, num_classes: int, extra: dict | None = None,
                 grid_count: int | None = None) -> dict[str, Path]:
    """Write ``grid.png`` (a row per class; of the first ``grid_count`` images if given),
    ``samples.npz`` (every image) and ``samples.json`` to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown = slice(None) if grid_count is None else slice(0, grid_count)
    order, per_row = class_grid_order(result.labels[shown], num_classes)
    paths = {"grid": save_grid(out / "grid.png", images[shown][order], nrow=per_row)}
    paths["npz"] = save_arrays(out / "samples.npz", dict(images=images.numpy().astype("uint8"), labels=result.labels.numpy(), tokens=result.tokens.numpy()))
    paths["json"] = _record(out / "samples.json", len(images), result, extra)
    return paths


def save_label_map(path: Path, label_map: Tensor, palette: Tensor) -> None:
    """A palette PNG: a colour picture whose pixel values are the labels (reads back exactly)."""
    img = Image.fromarray(label_map.to(torch.uint8).numpy(), mode="P")
    img.putpalette(palette.flatten().tolist())
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_joint_samples(out: str | Path, model, images: Tensor, maps: Tensor, result: SampleResult, extra: dict | None = None) -> dict[str, Path]:
    """``image/NNNNNN.png`` and ``segmentation/NNNNNN.png`` (palette PNGs, usable as a given
    folder), grids ``images.png``, ``segmentations.png`` and ``pairs.png`` (each map beside its
    image), ``samples.npz`` and ``samples.json``; ``model``: the ``JointGen`` that drew them."""
    out = Path(out)
    for sub in ("image", "segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    palette = model.seg_tokenizer.palette.cpu()
    for i in range(len(images)):
        pic = images[i].permute(1, 2, 0).numpy()
        Image.fromarray(pic[..., 0] if pic.shape[-1] == 1 else pic).save(out / "image" / f"{i:06d}.png")
        save_label_map(out / "segmentation" / f"{i:06d}.png", maps[i], palette)
    coloured = model.seg_tokenizer.colour(maps)
    paths = {"images": save_grid(out / "images.png", images), "segmentations": save_grid(out / "segmentations.png", coloured)}
    # each map beside its image, 4 pairs a row: what a reader compares
    pairs = torch.stack([coloured, images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images], 1).flatten(0, 1)
    paths["pairs"] = save_grid(out / "pairs.png", pairs, nrow=8)
    arrays = dict(images=images.numpy().astype("uint8"), maps=maps.numpy().astype("uint8"), tokens=result.tokens.numpy(), labels=result.labels.numpy())
    paths["npz"] = save_arrays(out / "samples.npz", arrays)
    paths["json"] = _record(out / "samples.json", len(images), result, extra)
    return paths
