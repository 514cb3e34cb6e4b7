"""``maskgen demo``: every sampler on the shipped reference models, and (``--train``) the
whole pipeline trained from scratch on the embedded Fashion-MNIST subset.

The reference demo samples ``num`` images (100 per class) with each sampler, scores them
with the shipped dataset classifier against the shipped Fashion-MNIST training-set
statistics (FD-clf, classifier score, class accuracy), times them, prints a table and
writes a PNG grid per sampler. The training demo trains a VQ tokenizer and a small
generator and samples a class-by-class grid with and without classifier-free guidance
(about ten minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from .checkpoint import save_json
from .errors import MaskgenError
from .models.transformer import GeneratorConfig
from .pipeline import MaskGen, save_samples
from .sampling.loop import SampleResult
from .tokenizers import VQConfig
from .training.masking import MaskedObjectiveConfig
from .training.trainer import TrainConfig
from .validate import integer
from .workflows import train_generator, train_tokenizer

DEMO_TOKENIZER = VQConfig(image_size=32, channels=1, codebook_size=256, downsample=4)
DEMO_GENERATOR = GeneratorConfig(width=128, depth=4, heads=4)


# name -> MaskGen.sampler keyword arguments; papers' settings, not tuned on the demo's seed
DEMO_SAMPLERS: dict[str, dict] = {
    "maskgit": dict(fill="confidence", steps=8),
    "cfg": dict(fill="confidence", steps=8, cfg=2.0),
    "blur": dict(fill="confidence", steps=8, guidance="blur", scale=1.0),
    "sag": dict(fill="confidence", steps=8, guidance="sag", scale=1.0),
    "self-guidance": dict(fill="confidence", steps=8, guidance="self", scale=1.0, choice_temperature=25.0, annealing="compound"),
    "token-critic": dict(fill="critic", steps=8, critic_noise=1.0),
    "ancestral": dict(fill="ancestral", steps=8),
    "flow": dict(fill="flow", steps=8, argmax_last=True),
    "halton": dict(fill="halton", steps=8),  # Besnier et al. 2025: a fixed low-discrepancy order
    # eMIGM over continuous tokens (002): the shipped MAE + diffusion-head model in reference/emigm;
    # its 256px preset: exp schedule, 16 steps, DPM-Solver++ 8 head steps, CFG 4 (s = 3 here:
    # weak + (1 + s)(strong - weak)) on (0.1, 0.3]
    "emigm": dict(model="emigm", fill="ancestral", steps=16, schedule="exp", cfg=3.0, cfg_interval=(0.1, 0.3), head_sampler="dpm-solver", head_steps=8),
    # Di[M]O (Zhu et al. 2025): the one-step student distilled from the generator (maskgen distill), NFE 1
    "one-step": dict(fill="one-step"),
}
# samplers that need a component folder next to the generator: left out of the default list
# where the folder has none, refused by name
NEEDS = {"one-step": "one-step"}


def run_reference_demo(out: str | Path, num: int = 1000, seed: int = 0, samplers: list[str] | None = None, model_dir: str | Path | None = None, batch_size: int = 250) -> list[dict]:
    """Sample, score and time every sampler in ``DEMO_SAMPLERS`` on the reference models."""
    from .evaluate import evaluate_images, load_network, reference_network
    from .metrics import load_stats
    from .pipeline import reference_dir

    # every check before the first sampler runs: a bad name must not end a half-written demo
    integer("--num", num, 1)
    unknown = [n for n in samplers or () if n not in DEMO_SAMPLERS]
    if unknown:
        raise MaskgenError(f"unknown demo sampler {unknown[0]!r}; choose from {', '.join(DEMO_SAMPLERS)}")
    folder = Path(model_dir) if model_dir else reference_dir()
    names = samplers or [n for n in DEMO_SAMPLERS if n not in NEEDS or (folder / NEEDS[n]).is_dir()]
    missing = [n for n in names if n in NEEDS and not (folder / NEEDS[n]).is_dir()]
    if missing:
        raise MaskgenError(f"demo sampler {missing[0]} needs {folder / NEEDS[missing[0]]}: make it with `maskgen distill --model {folder} --out {folder / NEEDS[missing[0]]}`")
    stats_path = folder / "classifier" / "ref-stats.npz"
    # the table shows FD, score and accuracy only: drop the reference features so the
    # evaluation skips precision/recall and KID (a sizeable share of the 5-minute budget)
    models = {None: MaskGen.load(folder)}
    for sub in {DEMO_SAMPLERS[n].get("model") for n in names} - {None}:
        models[sub] = MaskGen.load(folder / sub)  # a missing model fails here, before any sampling
    ref = dataclasses.replace(load_stats(stats_path), features=None)
    net = load_network(reference_network(stats_path))
    num_classes = models[None].generator.config.num_classes
    labels = torch.arange(num) % num_classes
    out = Path(out)
    rows = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", flush=True)
        options = dict(DEMO_SAMPLERS[name])
        model = models[options.pop("model", None)]
        start = time.perf_counter()
        images, result = model.generate(labels, model.sampler(**options), seed=seed, batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
        m = evaluate_images(images.numpy(), labels.numpy(), ref, net, progress=False)
        save_samples(out / name, images[:100], SampleResult(result.tokens[:100], labels[:100], result.nfe, result.settings), num_classes)
        rows.append({"sampler": name, "fd_clf": m["fd_clf"], "cs": m["cs"], "class_accuracy": m["class_accuracy"], "nfe": result.nfe, "nfe_head": result.settings.get("nfe_head"), "sec_per_image": seconds / num, "grid": str(out / name / "grid.png")})
    save_json(out / "demo.json", {"model": str(folder), "num": num, "seed": seed, "rows": rows, "samplers": {n: DEMO_SAMPLERS[n] for n in names}})
    print(f"\n{num} samples per sampler, FD-clf and classifier score against Fashion-MNIST train statistics ({ref.count} images)\n")
    print("| sampler | FD-clf | classifier score | class accuracy | NFE | head passes | s/image |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        head = f"{r['nfe_head']:g}" if r.get("nfe_head") else "-"
        print(f"| {r['sampler']} | {r['fd_clf']:.2f} | {r['cs']:.2f} | {r['class_accuracy']:.3f} | {r['nfe']:g} | {head} | {r['sec_per_image']:.4f} |")
    print(f"\ngrids: {out}/<sampler>/grid.png")
    return rows


def run_demo(out: str | Path, tokenizer_steps: int | None = None, steps: int | None = None, seed: int = 0) -> dict:
    """The train-from-scratch demo (``maskgen demo --train``)."""
    out = Path(out)
    for name, value in (("--tokenizer-steps", tokenizer_steps), ("--steps", steps)):
        if value is not None:
            integer(name, value, 1)  # 0 must not quietly mean the default
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
        sampler = model.sampler(steps=8, cfg=cfg)
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
