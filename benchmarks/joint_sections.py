"""docs/results-joint.md sections: joint image+segmentation models (Discrete Interpolants, Hu &
Ommer 2025, Sec. 3.4-3.5, Table 5) on the Fashion-MNIST mosaic, trained here with
``configs/joint-etm-mosaic.yaml`` and ``configs/joint-itm-mosaic.yaml``.

- ``jnoise``: the ITM model's two tasks at three sampling seeds (the noise of these sections),
  plus the floors the tokenizers set (true maps and images through their tokenizers);
- ``table5``: 003 Table 5, ETM against ITM: mIoU of image->segmentation and FD-clf of
  segmentation->image, each without and with CFG on the given modality (003 Eq. 6).

The models and the command that writes docs/results-joint.md:

    maskgen train --config configs/joint-etm-mosaic.yaml --tokenizer src/maskgen/reference --out runs/joint-etm
    maskgen train --config configs/joint-itm-mosaic.yaml --tokenizer src/maskgen/reference --out runs/joint-itm
    python benchmarks/results.py --model src/maskgen/reference --ref src/maskgen/reference/classifier/ref-stats.npz \\
        --num 500 --threads 1 --sections jnoise,table5 --joint runs/joint-etm,runs/joint-itm \\
        --out runs/results --doc docs/results-joint.md

Every row samples ``--num`` held-out mosaics (``mosaic-test:NUM``, items the training mosaics
never contain): their images given (mIoU and pixel accuracy of the sampled maps against the
true ones) or their maps given (FD-clf of the sampled images against the true images, in the
features of the shipped Fashion-MNIST classifier). Fixed before any run: the confidence
sampler at 8 steps, cosine, Gumbel temperature 4.5 (``SamplerSpec``'s defaults), CFG scale 1
as the guided setting; nothing is tuned on these seeds.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from maskgen.checkpoint import load_json
from maskgen.data.segmentation import open_segmentation
from maskgen.metrics.evaluate import image_fd
from maskgen.pipelines import JointGen
from maskgen.metrics.segmentation import segmentation_scores

if TYPE_CHECKING:
    from results import Results, Section

JOINT_SECTIONS = ("jnoise", "table5")
STEPS = 8
TASKS = ("image->segmentation", "segmentation->image")


@dataclass
class JointNoise:
    """Seed-to-seed standard deviation of mIoU and FD-clf (one row at three seeds)."""

    miou: float = 0.0
    fd: float = 0.0

    def real(self, delta: float, metric: str) -> bool:
        return abs(delta) > 2 * getattr(self, metric)


def _held_out(res: "Results"):
    if getattr(res, "joint_data", None) is None:
        res.joint_data = open_segmentation(f"mosaic-test:{res.args.num}")
    return res.joint_data


def _cached(res: "Results", key: dict, compute) -> dict:
    folder = Path(res.args.out) / "joint-rows" if res.args.out else None
    path = folder / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".json") if folder else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    row = {**key, **compute()}
    if path is not None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row, indent=1))
    return row


def joint_row(res: "Results", section: "Section", method: str, folder: str, task: str, seed: int = 0, cfg: float = 0.0) -> dict:
    """One model, one task, one seed: sampled on the held-out mosaics and scored."""
    data = _held_out(res)
    key = {"method": method, "setting": f"{task}, cfg {cfg:g}, seed {seed}", "model": folder, "task": task, "seed": seed,
           "cfg": cfg, "num": res.args.num, "steps": STEPS, "sha256": load_json(Path(folder) / "generator.json").get("sha256")}

    def compute() -> dict:
        model = JointGen.load(folder, device=res.args.device)
        sampler = model.sampler(steps=STEPS, **({"cfg": cfg} if cfg else {}))
        start = time.perf_counter()
        given = {"images": data.images} if task == TASKS[0] else {"maps": data.maps}
        images, maps, result = model.generate(len(data), sampler, seed=seed, batch_size=res.args.batch_size, progress=False, **given)
        seconds = (time.perf_counter() - start) / len(data)
        if task == TASKS[0]:
            s = segmentation_scores(maps, data.maps, data.num_labels)
            scores = {"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"]}
        else:
            scores = {"fd": image_fd(images, data.images, None, res.args.device)["fd_clf"]}
        return {**scores, "nfe": result.nfe, "sec_per_image": seconds}

    row = _cached(res, key, compute)
    section.rows.append(row)
    return row


def floor_rows(res: "Results", section: "Section", folder: str) -> None:
    """What the tokenizers alone allow: the true maps through the segmentation tokenizer
    (the best mIoU a sampled token map can reach) and the true images through the VQ
    tokenizer (the FD-clf of perfect image tokens); and every pixel called background."""
    data = _held_out(res)

    def compute() -> dict:
        model = JointGen.load(folder)
        with torch.no_grad():
            maps = model.seg_tokenizer.decode(model.seg_tokenizer.encode(data.maps))
            images = model.tokenizer.decode(model.tokenizer.encode(data.images))
        s = segmentation_scores(maps, data.maps, data.num_labels)
        return {"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"], "fd": image_fd(images, data.images, None, res.args.device)["fd_clf"]}

    section.rows.append(_cached(res, {"method": "tokenizers", "setting": "true tokens (floor)", "num": res.args.num}, compute))

    def background() -> dict:
        s = segmentation_scores(torch.zeros_like(data.maps), data.maps, data.num_labels)
        return {"miou": s["miou"], "pixel_accuracy": s["pixel_accuracy"]}

    # the baseline a segmenter must beat: every pixel called background
    section.rows.append(_cached(res, {"method": "all background", "setting": "no model", "num": res.args.num}, background))


def jnoise_section(res: "Results", Section) -> "Section":
    etm, itm = res.args.joint.split(",")
    s = Section("Joint sampling noise: one row at three seeds",
                f"The ITM model `{itm}`, both tasks without CFG, sampling seeds 0, 1, 2; then the tokenizers' floors and the "
                "all-background map.")
    for task in TASKS:
        for seed in (0, 1, 2):
            joint_row(res, s, "ITM", itm, task, seed=seed)
    miou = [r["miou"] for r in s.rows if r["task"] == TASKS[0]]
    fd = [r["fd"] for r in s.rows if r["task"] == TASKS[1]]
    res.jnoise = JointNoise(statistics.stdev(miou), statistics.stdev(fd))
    floor_rows(res, s, itm)
    s.about += (f" Standard deviation over the seeds: mIoU {res.jnoise.miou:.4f}, FD-clf {res.jnoise.fd:.3f}; the verdict "
                "counts a difference as real only beyond twice these.")
    return s


def table5_section(res: "Results", Section) -> "Section":
    etm, itm = res.args.joint.split(",")
    s = Section(
        "003 Table 5: explicit against implicit timestep, one joint model each",
        f"Two joint models trained identically except for the timestep input (`{etm}`: ETM, a time per modality; `{itm}`: "
        f"ITM), seed 0; image->segmentation (mIoU, pixel accuracy) and segmentation->image (FD-clf), without CFG and with "
        f"CFG 1 on the given modality (weak branch: that modality fully masked). The noise is that of sampling seeds "
        f"on one trained model; training-seed noise (one more training run per seed, not run here) is not in it.",
        claims=[lambda rows, _noise: table5_claim(rows, getattr(res, "jnoise", JointNoise()))],
    )
    for cfg in (0.0, 1.0):
        for task in TASKS:
            for name, folder in (("ETM", etm), ("ITM", itm)):
                joint_row(res, s, name, folder, task, cfg=cfg)
    return s


def table5_claim(rows, noise: JointNoise) -> str:
    """003: "the comparable performance of the Explicit and Implicit timestep models" (FID 34.4
    vs 33.8, mIoU 89.1 vs 90.1). Comparable here: neither difference beyond twice the noise."""
    def pick(name: str, task: str) -> dict:
        return rows[name, f"{task}, cfg 0, seed 0"]

    e_seg, i_seg = pick("ETM", TASKS[0]), pick("ITM", TASKS[0])
    e_img, i_img = pick("ETM", TASKS[1]), pick("ITM", TASKS[1])
    d_miou, d_fd = i_seg["miou"] - e_seg["miou"], i_img["fd"] - e_img["fd"]
    same_miou, same_fd = not noise.real(d_miou, "miou"), not noise.real(d_fd, "fd")
    verdict = "**Agrees**" if same_miou and same_fd else "**Partly agrees**" if same_miou or same_fd else "**Disagrees**"
    return (
        f"{verdict} with 003 Table 5 (ETM and ITM comparable; FID 34.4 vs 33.8, mIoU 89.1 vs 90.1 on Cityscapes): without "
        f"CFG, mIoU ETM {e_seg['miou']:.3f} vs ITM {i_seg['miou']:.3f} (difference {d_miou:+.3f}, noise 2 sd = "
        f"{2 * noise.miou:.3f}) and FD-clf ETM {e_img['fd']:.2f} vs ITM {i_img['fd']:.2f} (difference {d_fd:+.2f}, noise "
        f"2 sd = {2 * noise.fd:.2f})."
    )


def intro(res: "Results") -> list[str]:
    etm, itm = res.args.joint.split(",")
    return [
        f"Joint image+segmentation models (003 Sec. 3.4) on the Fashion-MNIST mosaic (`maskgen.data.segmentation`: 32x32 "
        f"images of 2-3 shrunk items, maps of 11 labels): `{etm}` from `configs/joint-etm-mosaic.yaml` and `{itm}` from "
        "`configs/joint-itm-mosaic.yaml` (commands in `benchmarks/results.py`). Every row samples the first "
        f"{res.args.num} held-out mosaics (`mosaic-test`, built from bundled items the training mosaics never use) with the "
        f"confidence sampler, {STEPS} steps. mIoU is the mean over labels of the set's intersection-over-union (labels "
        "absent from both maps left out; `maskgen.metrics.segmentation`), pixel accuracy the share of pixels labelled "
        "right (both higher is better). FD-clf is the Frechet distance between the sampled and the true held-out images "
        "in the shipped Fashion-MNIST classifier's features (lower is better); that classifier saw single items, not "
        "mosaics, so it serves as a fixed feature network off its training data, as Inception does on other data sets: "
        "compare the numbers within this page only. Seconds per image are wall time on the shared machine that ran the "
        "row. 003's numbers are Cityscapes FID/mIoU; here only the direction and size of each effect can be compared.",
        "",
    ]
