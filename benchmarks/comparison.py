"""What the sampler-comparison benchmarks share: one row is one sampler, run on the same
labels and seed as every other row, timed, and scored against reference statistics.

Rows are cached under ``<out>/rows`` by what determines them (model folder, sampler spec,
seed, count, and for refinement the base row), so a killed run resumes where it stopped and a
row two sections share is sampled once. A row records its generator's sha256 and is sampled
again when the folder holds another generator.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from maskgen.evaluate import evaluate_images, load_network, reference_network
from maskgen.metrics import load_stats
from maskgen.pipeline import MaskGen
from maskgen.sampling.spec import SamplerSpec

# (key, header, format); a column no row has is left out of the table
COLUMNS = [
    ("fid", "FID", "{:.2f}"),
    ("fd", "FD-clf", "{:.2f}"),
    ("score", "score", "{:.2f}"),
    ("class_accuracy", "class acc", "{:.3f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("miou", "mIoU", "{:.3f}"),
    ("pixel_accuracy", "pixel acc", "{:.3f}"),
    ("nfe", "NFE", "{:g}"),
    ("nfe_head", "head passes", "{:g}"),
    ("train_tok_s", "train tok/s", "{:,.0f}"),
    ("sec_per_image", "s/img", "{:.4f}"),
    ("images_per_second", "img/s", "{:.0f}"),
]


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder (generator + tokenizer)")
    p.add_argument("--ref", required=True, help="reference statistics from `maskgen ref-stats` (its network is used)")
    p.add_argument("--inception-ref", default=None, help="Inception statistics of the training set: adds an FID column on the same samples")
    p.add_argument("--num", type=int, default=1000, help="samples per row (100 per class with 10 classes)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every row")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for the row cache, results.json, tables and plots")


class Bench:
    """Models, the evaluation network(s) with their reference statistics, and the labels every row samples."""

    def __init__(self, args: argparse.Namespace):
        torch.set_num_threads(args.threads)
        self.args = args
        self.device = torch.device(args.device)
        self.models: dict[str, MaskGen] = {}
        self.model = self.model_for(args.model)
        self.ref = load_stats(args.ref)
        self.network = reference_network(args.ref)
        self.net = load_network(self.network, self.device)
        self.inception = None
        if args.inception_ref:
            stats = load_stats(args.inception_ref)
            self.inception = (stats, load_network(reference_network(args.inception_ref), self.device))
        c = self.model.generator.config.num_classes
        self.labels = torch.arange(args.num) % c
        self.rows: list[dict[str, Any]] = []
        self.cache = Path(args.out) / "rows" if args.out else None

    def model_for(self, folder: str | Path) -> MaskGen:
        key = str(folder)
        if key not in self.models:
            self.models[key] = MaskGen.load(folder, device=self.device)
        return self.models[key]

    def run(
        self,
        name: str,
        fields: dict[str, Any],
        spec: dict[str, Any] | SamplerSpec,
        model: str | None = None,
        seed: int | None = None,
        base: dict | None = None,
    ) -> dict[str, Any]:
        """One row: ``--num`` images from the ``SamplerSpec`` that ``spec`` (``maskgen sample``'s
        option names, or a ``SamplerSpec`` itself) describes (or, with ``base``, the critic
        refiner's spec applied to the base row's tokens, its NFE and time added to the base
        row's), scored."""
        model = model or self.args.model
        seed = self.args.seed if seed is None else seed
        if isinstance(spec, SamplerSpec):
            sampler_spec = spec
        else:
            sampler_spec = MaskGen.refiner_spec(**spec) if base is not None else SamplerSpec.from_options(**spec)
        spec = sampler_spec.to_dict()
        identity = {"model": str(model), "seed": seed, "num": self.args.num, "spec": spec, "base": base["key"] if base else None,
                    "inception": self.args.inception_ref}
        key = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
        sha = self.model_for(model).generator.sha256
        row = self._cached(key)
        if row is not None and row.get("generator_sha256", sha) != sha:
            row = None  # the folder now holds another generator (retrained): the cached row is stale
        if row is None:
            row = self._sample(model, spec, seed, base)
            row["key"], row["generator_sha256"] = key, sha
            self._store(row)
        row.update({"method": name, **fields})
        self.rows.append(row)
        shown = "  ".join(f"{h} {fmt.format(row[k])}" for k, h, fmt in COLUMNS if row.get(k) is not None)
        print(f"[{len(self.rows)}] {name} {fields}: {shown}", flush=True, file=sys.stderr)
        return row

    def _sample(self, model_dir: str, spec: dict[str, Any], seed: int, base: dict | None) -> dict[str, Any]:
        model = self.model_for(model_dir)
        sampler = model.sampler(spec)
        start = time.perf_counter()
        init = torch.from_numpy(base["tokens"]) if base is not None else None
        images, result = model.generate(self.labels, sampler, seed=seed, batch_size=self.args.batch_size, progress=False, init=init)
        seconds = time.perf_counter() - start
        if base is not None:
            seconds += base["sec_per_image"] * len(images)
            result.nfe += base["nfe"]
        m = evaluate_images(images.numpy(), self.labels.numpy(), self.ref, self.net, device=self.device, progress=False, kid_subsets=10)
        row = {
            "fd": m.get("fd_clf", m.get("fid")),
            "score": m.get("cs", m.get("is")),
            "class_accuracy": m.get("class_accuracy"),
            "precision": m.get("precision_clf", m.get("precision")),
            "recall": m.get("recall_clf", m.get("recall")),
            "nfe": result.nfe,
            "nfe_head": result.settings.get("nfe_head"),
            "sec_per_image": seconds / len(images),
            "images_per_second": len(images) / seconds,
            "settings": result.settings,
            "tokens": result.tokens.numpy(),
        }
        if self.inception is not None:
            stats, net = self.inception
            row["fid"] = evaluate_images(images.numpy(), None, stats, net, device=self.device, progress=False, kid_subsets=10)["fid"]
        return row

    def _cached(self, key: str) -> dict[str, Any] | None:
        if self.cache is None or not (self.cache / f"{key}.json").is_file():
            return None
        row = json.loads((self.cache / f"{key}.json").read_text())
        row["tokens"] = np.load(self.cache / f"{key}.npy")
        return row

    def _store(self, row: dict[str, Any]) -> None:
        if self.cache is None:
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        key = row["key"]
        # tokens first, then the JSON atomically: a row counts as cached only once both are whole
        with open(self.cache / f"{key}.npy.tmp", "wb") as f:
            np.save(f, row["tokens"])
        os.replace(self.cache / f"{key}.npy.tmp", self.cache / f"{key}.npy")
        meta = {k: v for k, v in row.items() if k != "tokens"}
        (self.cache / f"{key}.json.tmp").write_text(json.dumps(meta, default=str))
        os.replace(self.cache / f"{key}.json.tmp", self.cache / f"{key}.json")

    def header(self) -> str:
        a = self.args
        fid = f"; FID against `{a.inception_ref}`" if a.inception_ref else ""
        return (
            f"{a.num} samples per row (seed {a.seed}), FD-clf and score in the feature space of "
            f"`{self.network}` against `{a.ref}` ({self.ref.count} images){fid}"
        )

    def save(self, name: str, table: str, extra: dict[str, Any] | None = None) -> None:
        if not self.args.out:
            return
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.md").write_text(table + "\n")
        rows = [{k: v for k, v in r.items() if k != "tokens"} for r in self.rows]
        record = {"args": vars(self.args), "network": self.network, "rows": rows, **(extra or {})}
        (out / "results.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def markdown(rows: Iterable[dict[str, Any]], keys: list[str]) -> str:
    """A markdown table: the ``keys`` columns as given, then the metric columns some row has."""
    rows = list(rows)
    cols = [(k, h, fmt) for k, h, fmt in COLUMNS if any(r.get(k) is not None for r in rows)]
    head = keys + [h for _, h, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k, "")) for k in keys]
        cells += ["" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _axes(size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def _save(fig, ax, path: str | Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    ax.set_ylabel("FD (lower is better)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_fd_vs_score(rows: list[dict[str, Any]], path: str | Path, series: str, point: str, title: str = "") -> Path:
    """FD (lower is better) against the classifier/Inception score, one line per ``series``,
    points labelled by ``point`` (000 Fig. 4)."""
    fig, ax = _axes((6, 4.5))
    for name in dict.fromkeys(r[series] for r in rows):
        pts = [r for r in rows if r[series] == name and r["fd"] is not None and r["score"] is not None]
        ax.plot([r["score"] for r in pts], [r["fd"] for r in pts], marker="o", label=name)
        for r in pts:
            ax.annotate(str(r[point]), (r["score"], r["fd"]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("score (higher is better)")
    return _save(fig, ax, path, title)


def plot_fd_vs_nfe(rows: list[dict[str, Any]], path: str | Path, series: Callable[[dict[str, Any]], str], title: str = "") -> Path:
    """FD against NFE, one line per ``series(row)`` (002 Fig. 3, 000 Fig. 6c, 003 Fig. 3)."""
    fig, ax = _axes((5.5, 4))
    for name in dict.fromkeys(series(r) for r in rows):
        pts = sorted((r["nfe"], r["fd"]) for r in rows if series(r) == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("NFE")
    return _save(fig, ax, path, title)
