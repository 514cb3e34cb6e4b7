"""`maskgen encode` throughput on a generated ImageNet-style folder, by number of loader workers.

Writes ``--images`` random JPEGs of ``--source-size`` (default 375x500, a typical ImageNet
photo) into class subfolders of a temporary folder, then times ``encode_dataset`` (the
library half of ``maskgen encode``: ADM center crop to ``--image-size``, the tokenizer on
``--device``, memory-mapped output, resumable chunks) once per ``--workers`` value, and
prints a markdown table: images/s (median over ``--repeats``), the speed-up over the first
row, the images/s of the same DataLoader reading and cropping alone (no tokenizer: the
ceiling the workers set), and the seconds the serial PIL check of every file that opening a folder for training
does (``check_image_files``), which encode leaves to its workers, would have cost.

The tokenizer is a random-init VQ tokenizer of the shipped reference's shape at
``--image-size`` (3 channels, ``--width``), or ``--tokenizer DIR``. ``--flips`` encodes both
mirror images, as MAR's cache does (two tokenizer calls per batch).

    python benchmarks/encode_speed.py --threads 1                      # 400 images, workers 0,1,2 (~1 min on 2 cores)
    python benchmarks/encode_speed.py --images 2000 --workers 0,2,4,8 --flips --device cuda
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from maskgen.data import encode_dataset, open_dataset
from maskgen.data.images import check_image_files
from maskgen.tokenizers import VQConfig, VQTokenizer, load_tokenizer
from maskgen.devices import resolve_device

from common import load_note


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--images", type=int, default=400, help="images in the generated folder")
    ap.add_argument("--classes", type=int, default=4, help="class subfolders")
    ap.add_argument("--source-size", default="375x500", help="HxW of the generated JPEGs")
    ap.add_argument("--image-size", type=int, default=None, help="the random tokenizer's input size (default 64; --tokenizer has its own)")
    ap.add_argument("--width", type=int, default=16, help="random tokenizer's base width")
    ap.add_argument("--tokenizer", default=None, help="a tokenizer folder instead of the random one")
    ap.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--flips", action="store_true", help="encode both horizontal flips")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per worker count (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads of the main process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write every number measured to this file")
    return ap


def make_folder(root: Path, n: int, classes: int, size: tuple[int, int]) -> Path:
    """``n`` random JPEGs (smooth noise, so they compress like photos) in ``classes`` subfolders."""
    g = np.random.default_rng(0)
    h, w = size
    for i in range(n):
        folder = root / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        small = g.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        img.save(folder / f"{i:06d}.JPEG", quality=90)
    return root


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    workers = [int(w) for w in args.workers.split(",")]
    size = tuple(int(x) for x in args.source_size.lower().split("x"))
    if args.tokenizer and args.image_size is not None:
        raise SystemExit("--image-size is the random tokenizer's; a --tokenizer has its own")
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer).to(device)
    else:
        torch.manual_seed(0)
        tok = VQTokenizer(VQConfig(image_size=args.image_size or 64, channels=3, width=args.width)).to(device).eval()
        tok.sha256 = "random-init"  # any fixed name: lets the run record resumable progress, as a real one does
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp) / "data", args.images, args.classes, size)
        data = open_dataset(f"folder:{root}", image_size=tok.config.image_size, channels=tok.config.channels, check_files=False)
        t = time.perf_counter()
        check_image_files(data.files, progress=False)
        check_s = time.perf_counter() - t
        for w in workers:
            times = []
            for _ in range(args.repeats):
                out = Path(tmp) / "cache"
                shutil.rmtree(out, ignore_errors=True)
                t = time.perf_counter()
                encode_dataset(tok, data, out, batch_size=args.batch_size, device=device, num_workers=w, flips=args.flips)
                times.append(time.perf_counter() - t)
            s = statistics.median(times)
            t = time.perf_counter()
            for _ in DataLoader(data, batch_size=args.batch_size, num_workers=w):
                pass
            rows.append({"workers": w, "seconds": s, "images_per_s": len(data) / s, "decode_images_per_s": len(data) / (time.perf_counter() - t)})
            print(f"workers {w}: {len(data) / s:.1f} images/s", file=sys.stderr)
    base = rows[0]["images_per_s"]
    print(f"encode of {args.images} {size[0]}x{size[1]} JPEGs to {tok.config.image_size}px, batch {args.batch_size}, "
          f"flips {'on' if args.flips else 'off'}, {device}, {args.threads} main thread(s); {load_note()}\n")
    print("| workers | images/s | s | vs first row | decode-only images/s |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workers']} | {r['images_per_s']:.1f} | {r['seconds']:.2f} | {r['images_per_s'] / base:.2f}x | {r['decode_images_per_s']:.1f} |")
    print(f"\nserial check of every file when a folder opens for training (skipped by encode): {check_s:.2f} s "
          f"({1000 * check_s / len(data):.2f} ms/image)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "check_seconds": check_s}, indent=2))


if __name__ == "__main__":
    main()
