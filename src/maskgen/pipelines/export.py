"""Export a model folder and what was trained on it as one compact, self-contained folder.

The generator, its tokenizer, the self-guidance modules, the Token-Critic, a Di[M]O one-step
student and the dataset classifier are copied with their floating-point tensors cast (bf16 by default: half the
size; modules load them back into float32). A cast changes the generator file's sha256,
so the records of the pieces trained on it (``base_sha256``, ``generator_sha256``,
``teacher_sha256``) are
re-stamped with the new hash, and the classifier's reference statistics are recomputed
with the exported classifier, whose features moved with its weights.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..checkpoint import file_sha256, load_json, read_checkpoint, save_json, write_checkpoint
from ..errors import MaskgenError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# pieces found next to a generator: (sub-folder, checkpoint name, record key holding the generator's hash)
COMPONENTS = (
    ("self-guidance", "self-guidance", "base_sha256"),
    ("self-guidance-lmask", "self-guidance", "base_sha256"),
    ("critic", "critic", "generator_sha256"),
    ("one-step", "one-step", "teacher_sha256"),
)


def convert_checkpoint(src: Path, name: str, dst: Path, dtype: torch.dtype, **record) -> str:
    """Copy ``src/name.{safetensors,json}`` to ``dst`` with floating tensors in ``dtype``; return the new sha256.

    It goes through the one checkpoint path, so the source is hash-checked before it is
    copied and the copy is written tensors first, JSON (new sha256, ``dtype``) last.
    """
    tensors, old, _ = read_checkpoint(src, name)
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    weights = write_checkpoint(dst, name, cast, {**old, **record, "dtype": str(dtype).removeprefix("torch.")})
    return file_sha256(weights)


def export_models(model_dir: str | Path, out: str | Path, dtype: str = "bf16", classifier: str | Path | None = None, ref_data: str | None = None, progress: bool = True) -> list[str]:
    """Export ``model_dir`` (+ its ``self-guidance*/``, ``critic/`` and ``one-step/``) and ``classifier`` to ``out``;
    with ``ref_data``, write the classifier's reference statistics of it as ``out/classifier/ref-stats.npz``."""
    if ref_data is not None and classifier is None:
        raise MaskgenError("--ref-data computes the classifier's reference statistics: it needs --classifier DIR")
    if dtype not in DTYPES:
        raise MaskgenError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    src, out, cast = Path(model_dir), Path(out), DTYPES[dtype]
    if out.resolve() == src.resolve():
        raise MaskgenError("export into a new folder, not the model folder itself")
    for what, folder, name in (("--model", src, "generator"), ("--model", src, "tokenizer"), ("--classifier", classifier, "classifier")):
        if folder is not None and not all((Path(folder) / f"{name}{ext}").is_file() for ext in (".json", ".safetensors")):
            raise MaskgenError(f"{what} {folder} holds no {name} ({name}.json and {name}.safetensors)")
    if ref_data:
        from ..data import open_images

        open_images(ref_data, "export --ref-data")  # a bad spec is refused before anything is written
    # everything is written into a scratch folder beside --out and moved in at the end, so a
    # failure half-way (a damaged component, a bad --ref-data) leaves --out as it was
    scratch = out.parent / f".{out.name}.export-tmp"
    if scratch.exists():
        shutil.rmtree(scratch)
    try:
        written = _export(src, scratch, cast, classifier, ref_data, progress)
        out.mkdir(parents=True, exist_ok=True)
        for entry in sorted(scratch.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # --overwrite: what the export writes replaces what was there
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return written


def _export(src: Path, out: Path, cast: torch.dtype, classifier: str | Path | None, ref_data: str | None, progress: bool) -> list[str]:
    out.mkdir(parents=True)
    written = ["generator", "tokenizer"]
    gen_sha = convert_checkpoint(src, "generator", out, cast)
    convert_checkpoint(src, "tokenizer", out, cast)
    for folder, name, key in COMPONENTS:
        if (src / folder / f"{name}.safetensors").is_file():
            (out / folder).mkdir(exist_ok=True)
            convert_checkpoint(src / folder, name, out / folder, cast, **{key: gen_sha})
            written.append(folder)
    if classifier is not None:
        (out / "classifier").mkdir(exist_ok=True)
        convert_checkpoint(Path(classifier), "classifier", out / "classifier", cast)
        written.append("classifier")
        if ref_data:
            from ..metrics.evaluate import reference_stats

            stats = out / "classifier" / "ref-stats.npz"
            reference_stats(ref_data, f"classifier:{out / 'classifier'}", stats, progress=progress)
            # the folder moves (into a package, another machine): name the classifier relative to the stats
            side = stats.with_suffix(".json")
            save_json(side, {**load_json(side), "network": "classifier:.", "network_relative_to_stats": True})
            written.append("classifier/ref-stats.npz")
    return written
