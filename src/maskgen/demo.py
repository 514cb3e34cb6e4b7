"""``maskgen demo``: the whole pipeline on the embedded Fashion-MNIST subset, on a CPU.

Trains a VQ tokenizer, trains a small generator, and samples a class-by-class grid with
and without classifier-free guidance. Sized to finish in about ten minutes on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .checkpoint import save_json
from .models.transformer import GeneratorConfig
from .pipeline import MaskGen, save_samples
from .tokenizers import VQConfig
from .training.masking import MaskedObjectiveConfig
from .training.trainer import TrainConfig
from .workflows import train_generator, train_tokenizer

DEMO_TOKENIZER = VQConfig(image_size=32, channels=1, codebook_size=256, downsample=4)
DEMO_GENERATOR = GeneratorConfig(width=128, depth=4, heads=4)


def run_demo(out: str | Path, tokenizer_steps: int | None = None, steps: int | None = None, seed: int = 0) -> dict:
    out = Path(out)
    start = time.perf_counter()
    torch.manual_seed(seed)  # only parameter initialisation reads the global RNG
    tok_dir, gen_dir = out / "tokenizer", out / "generator"

    print(f"[1/3] training the VQ tokenizer -> {tok_dir}")
    tok_train = TrainConfig(steps=tokenizer_steps or 600, batch_size=64, lr=2e-3, min_lr=1e-4, warmup=50, weight_decay=0.0, seed=seed, save_every=200)
    _, tok_metrics = train_tokenizer("embedded", tok_dir, DEMO_TOKENIZER, tok_train, resume=True)
    print(f"      PSNR {tok_metrics['psnr']:.2f} dB, codebook usage {tok_metrics['usage']:.1%}")

    print(f"[2/3] training the generator -> {gen_dir}")
    gen_train = TrainConfig(steps=steps or 1400, batch_size=64, lr=1e-3, min_lr=1e-5, warmup=100, ema=0.995, seed=seed, save_every=250)
    objective = MaskedObjectiveConfig(schedule="cosine", masking="count", cond_drop=0.1)
    train_generator("embedded", tok_dir, gen_dir, GeneratorConfig(**vars(DEMO_GENERATOR)), objective, gen_train, resume=True)

    print("[3/3] sampling a class-by-class grid, without and with classifier-free guidance")
    model = MaskGen.load(gen_dir)
    num_classes = model.generator.config.num_classes
    labels = torch.arange(num_classes).repeat_interleave(10)
    written = {}
    for name, cfg in (("no_cfg", 0.0), ("cfg", 2.0)):
        sampler = model.sampler("confidence", steps=8, cfg=cfg)
        images, result = model.generate(labels, sampler, seed=seed)
        written[name] = save_samples(out / f"samples_{name}", images, result, num_classes)
    minutes = (time.perf_counter() - start) / 60
    summary = {
        "minutes": round(minutes, 2),
        "tokenizer": {"folder": str(tok_dir), **tok_metrics},
        "generator": str(gen_dir),
        "samples": {k: {kk: str(vv) for kk, vv in v.items()} for k, v in written.items()},
    }
    save_json(out / "demo.json", summary)
    print(f"done in {minutes:.1f} min. Outputs:")
    print(f"  tokenizer          {tok_dir}")
    print(f"  generator          {gen_dir}  (sample more: maskgen sample --model {gen_dir} --num 100 --out DIR)")
    for k, v in written.items():
        print(f"  grid ({k:6s})      {v['grid']}")
    return summary
