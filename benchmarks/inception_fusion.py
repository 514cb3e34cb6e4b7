"""Would merging an Inception block's 1x1 convolutions into one wider convolution be faster?

Every Inception block applies two to four 1x1 convolutions to the same input. They can run as
one convolution with the output channels stacked, split afterwards (the same sums, so the same
features). This times both ways, each convolution with its ReLU through the oneDNN call the
feature network uses (``maskgen.onednn.PackedConv``), on the 1x1 groups of the FID Inception
network's blocks at its feature-map sizes, and prints one row per block shape. maskgen keeps
the separate convolutions: on the 2 cores it was developed on, the merged one was no faster.

    python benchmarks/inception_fusion.py                 # chunk 8, 2 threads
    python benchmarks/inception_fusion.py --chunk 16 --repeats 50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from maskgen.memory import keep_freed_memory
from maskgen.onednn import PackedConv

# (block, input channels, feature-map side, output channels of the 1x1 convolutions on the block input)
GROUPS = [
    ("Mixed_5b", 192, 35, (64, 48, 64)),
    ("Mixed_5c/5d", 288, 35, (64, 48, 64)),
    ("Mixed_6b", 768, 17, (192, 128, 128)),
    ("Mixed_6c/6d", 768, 17, (192, 160, 160)),
    ("Mixed_6e", 768, 17, (192, 192, 192)),
    ("Mixed_7a", 768, 17, (192, 192)),
    ("Mixed_7b", 1280, 8, (320, 384, 448)),
    ("Mixed_7c", 2048, 8, (320, 384, 448)),
]


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunk", type=int, default=8, help="images per pass")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{args.chunk} images per pass, {torch.get_num_threads()} threads, median of {args.repeats}\n")
    print("| block | input | 1x1 outputs | separate ms | merged + split ms | merged / separate | max abs difference |")
    print("|---|---|---|--:|--:|--:|--:|")
    for name, cin, side, outs in GROUPS:
        x = torch.randn(args.chunk, cin, side, side).contiguous(memory_format=torch.channels_last)
        convs = [nn.Conv2d(cin, c, 1).eval() for c in outs]
        merged = nn.Conv2d(cin, sum(outs), 1).eval()
        with torch.no_grad():
            merged.weight.copy_(torch.cat([c.weight for c in convs]))
            merged.bias.copy_(torch.cat([c.bias for c in convs]))
        separate, joint = [PackedConv(c) for c in convs], PackedConv(merged)
        with torch.inference_mode():
            if not joint.applies(x):
                raise SystemExit("the oneDNN path does not apply on this build (it needs PyTorch with oneDNN, fp32 on CPU)")
            t_sep = median_ms(lambda: [p.relu(x) for p in separate], args.repeats)
            t_joint = median_ms(lambda: joint.relu(x).split(list(outs), 1), args.repeats)
            diff = max(float((a - b).abs().max()) for a, b in zip(joint.relu(x).split(list(outs), 1), (p.relu(x) for p in separate)))
        print(f"| {name} | {cin}x{side}x{side} | {', '.join(map(str, outs))} | {t_sep:.2f} | {t_joint:.2f} | {t_joint / t_sep:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
