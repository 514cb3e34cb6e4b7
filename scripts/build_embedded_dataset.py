"""Build ``src/maskgen/data/fashion_mnist_subset.npz`` from the Fashion-MNIST IDX files.

The subset is class-balanced and deterministic (fixed seed), so rebuilding it gives the
same bytes of image data.  Usage::

    python scripts/build_embedded_dataset.py [--source DIR] [--per-class N] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from maskgen.data.idx import read_idx

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MAX_BYTES = 4_500_000  # keep the wheel small; the package must stay well under 5 MB
OUT = Path(__file__).resolve().parents[1] / "src" / "maskgen" / "data" / "fashion_mnist_subset.npz"


def find(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    sys.exit(f"missing {stem}[.gz] in {source}")


def build(images: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``per_class`` random images of each class, interleaved in a fixed random order."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            sys.exit(f"class {c} has only {len(idx)} images, need {per_class}")
        picks.append(np.sort(rng.choice(idx, per_class, replace=False)))
    order = rng.permutation(np.concatenate(picks))
    return images[order], labels[order].astype(np.uint8)


def compressed_size(images: np.ndarray, labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images, labels=labels, class_names=np.array(CLASS_NAMES))
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    images = read_idx(find(args.source, "train-images-idx3-ubyte"))
    labels = read_idx(find(args.source, "train-labels-idx1-ubyte"))
    per_class = args.per_class
    while True:
        sub_x, sub_y = build(images, labels, per_class, args.seed)
        blob = compressed_size(sub_x, sub_y)
        if len(blob) <= MAX_BYTES:
            break
        # shrink proportionally (with 5% margin) until the archive fits
        per_class = int(per_class * MAX_BYTES / len(blob) * 0.95)
        print(f"too large ({len(blob)} bytes); retrying with {per_class}/class")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(blob)
    print(f"wrote {args.out}: {len(sub_y)} images ({per_class}/class), {len(blob)} bytes")


if __name__ == "__main__":
    main()
