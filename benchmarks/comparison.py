"""What the sampler-comparison benchmarks share: one row is one sampler, run on the same
labels and seed as every other row, timed, and scored against reference statistics."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from maskgen.evaluate import evaluate_images, load_network, reference_network
from maskgen.metrics import load_stats
from maskgen.pipeline import MaskGen

# (key, header, format)
COLUMNS = [
    ("fd", "FD", "{:.2f}"),
    ("score", "score", "{:.2f}"),
    ("class_accuracy", "class acc", "{:.3f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("nfe", "NFE", "{:g}"),
    ("sec_per_image", "s/img", "{:.4f}"),
]


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder (generator + tokenizer)")
    p.add_argument("--ref", required=True, help="reference statistics from `maskgen ref-stats` (its network is used)")
    p.add_argument("--num", type=int, default=1000, help="samples per row (100 per class with 10 classes)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every row")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for results.json, table.md and the plot")


class Bench:
    """A model, its evaluation network and reference statistics, and the labels every row samples."""

    def __init__(self, args: argparse.Namespace):
        torch.set_num_threads(args.threads)
        self.args = args
        self.device = torch.device(args.device)
        self.model = MaskGen.load(args.model, device=self.device)
        self.ref = load_stats(args.ref)
        self.network = reference_network(args.ref)
        self.net = load_network(self.network, self.device)
        c = self.model.generator.config.num_classes
        self.labels = torch.arange(args.num) % c
        self.rows: list[dict[str, Any]] = []

    def run(self, name: str, fields: dict[str, Any], sampler=None, init: torch.Tensor | None = None, base: dict | None = None, **sampler_kwargs) -> dict[str, Any]:
        """Sample ``--num`` images with ``sampler`` (or ``model.sampler(**sampler_kwargs)``) and
        score them. With ``init`` (the tokens of row ``base``) the sampler refines them, and the
        row's NFE and time include the base row's."""
        sampler = sampler or self.model.sampler(**sampler_kwargs)
        start = time.perf_counter()
        images, result = self.model.generate(self.labels, sampler, seed=self.args.seed, batch_size=self.args.batch_size, progress=False, init=init)
        seconds = time.perf_counter() - start
        if base is not None:
            seconds += base["sec_per_image"] * len(images)
            result.nfe += base["nfe"]
        m = evaluate_images(images.numpy(), self.labels.numpy(), self.ref, self.net, device=self.device, progress=False, kid_subsets=10)
        row = {
            "method": name,
            **fields,
            "fd": m.get("fd_clf", m.get("fid")),
            "score": m.get("cs", m.get("is")),
            "class_accuracy": m.get("class_accuracy"),
            "precision": m.get("precision_clf", m.get("precision")),
            "recall": m.get("recall_clf", m.get("recall")),
            "nfe": result.nfe,
            "sec_per_image": seconds / len(images),
            "settings": result.settings,
            "tokens": result.tokens,
        }
        self.rows.append(row)
        shown = "  ".join(f"{h} {fmt.format(row[k])}" for k, h, fmt in COLUMNS if row.get(k) is not None)
        print(f"[{len(self.rows)}] {name} {fields}: {shown}", flush=True, file=__import__("sys").stderr)
        return row

    def header(self) -> str:
        a = self.args
        return (
            f"model `{a.model}`, {a.num} samples per row (seed {a.seed}), FD and score in the feature space of "
            f"`{self.network}` against `{a.ref}` ({self.ref.count} images)"
        )

    def save(self, table: str, extra: dict[str, Any] | None = None) -> None:
        if not self.args.out:
            return
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table + "\n")
        rows = [{k: v for k, v in r.items() if k != "tokens"} for r in self.rows]
        record = {"args": vars(self.args), "network": self.network, "rows": rows, **(extra or {})}
        (out / "results.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def markdown(rows: Iterable[dict[str, Any]], keys: list[str]) -> str:
    """A markdown table: the ``keys`` columns as given, then the metric columns."""
    rows = list(rows)
    head = keys + [h for _, h, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r.get(k, "")) for k in keys]
        cells += ["" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_fd_vs_score(rows: list[dict[str, Any]], path: str | Path, series: str, point: str, title: str = "") -> Path:
    """FD (lower is better) against the classifier/Inception score, one line per ``series``,
    points labelled by ``point`` (000 Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in dict.fromkeys(r[series] for r in rows):
        pts = [r for r in rows if r[series] == name and r["fd"] is not None and r["score"] is not None]
        ax.plot([r["score"] for r in pts], [r["fd"] for r in pts], marker="o", label=name)
        for r in pts:
            ax.annotate(str(r[point]), (r["score"], r["fd"]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("score (higher is better)")
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
