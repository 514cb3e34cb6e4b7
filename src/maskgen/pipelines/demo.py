"""``maskgen demo``: every sampler on the shipped reference models, and (``--train``) the
whole pipeline trained from scratch on the embedded Fashion-MNIST subset.

The reference demo samples ``num`` images (100 per class) with each sampler, scores them
with the shipped dataset classifier against the shipped Fashion-MNIST training-set
statistics (FD-clf, classifier score, class accuracy), times them, prints a table with each
row's ``maskgen sample`` options, and writes per row what ``maskgen sample`` writes: every
scored sample, a replayable ``samples.json`` and a PNG grid. The training demo trains a VQ tokenizer and a small
generator and samples a class-by-class grid with and without classifier-free guidance
(about ten minutes on 2 cores).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..checkpoint import save_json
from ..errors import MaskgenError
from ..models.transformer import GeneratorConfig
from ..shipped import REFERENCE, reference_dir
from ..tokenizers import VQConfig
from ..training import train_generator, train_tokenizer
from ..training.masking import MaskedObjectiveConfig
from ..training.trainer import TrainConfig
from ..validate import integer
from .maskgen import MaskGen
from .samples import save_samples

DEMO_TOKENIZER = VQConfig(image_size=32, channels=1, codebook_size=256, downsample=4)
DEMO_GENERATOR = GeneratorConfig(width=128, depth=4, heads=4)


# row name -> the flat options of `maskgen sample` (MaskGen.sampler keyword arguments); papers'
# settings, not tuned on the demo's seed. A row is named by the --sampler (fill rule) or
# --guidance value it shows, so the name is what a user passes back; the exact options are
# in the demo's table (`sample_options`) and each row's samples.json replays it
# (`maskgen sample --spec demo/<row>/samples.json`). "halton" is `--sampler halton`, not
# `--preset halton`; "emigm-paper" is eMIGM's paper settings, not `--preset emigm` (its code).
DEMO_SAMPLERS: dict[str, dict] = {
    "confidence": dict(fill="confidence", steps=8),  # MaskGIT
    "cfg": dict(fill="confidence", steps=8, cfg=2.0),
    "blur": dict(fill="confidence", steps=8, guidance="blur", scale=1.0),
    "sag": dict(fill="confidence", steps=8, guidance="sag", scale=1.0),
    "self": dict(fill="confidence", steps=8, guidance="self", scale=1.0, choice_temperature=25.0, annealing="compound"),
    "critic": dict(fill="critic", steps=8, critic_noise=1.0),  # Token-Critic
    "ancestral": dict(fill="ancestral", steps=8),
    "flow": dict(fill="flow", steps=8, argmax_last=True),
    "halton": dict(fill="halton", steps=8),  # Besnier et al. 2025: a fixed low-discrepancy order
    # eMIGM over continuous tokens (002): the shipped MAE + diffusion-head model in reference/emigm;
    # its 256px settings: exp schedule, 16 steps, DPM-Solver++ 8 head steps, CFG 4 (s = 3 here:
    # weak + (1 + s)(strong - weak)) on (0.1, 0.3]
    "emigm-paper": dict(model="emigm", fill="ancestral", steps=16, schedule="exp", cfg=3.0, cfg_interval=(0.1, 0.3), head_sampler="dpm-solver", head_steps=8),
    # Di[M]O (Zhu et al. 2025): the one-step student distilled from the generator (maskgen distill), NFE 1
    "one-step": dict(fill="one-step"),
}
# the rows' names before they were named by their options; still accepted by --samplers
OLD_NAMES = {"maskgit": "confidence", "self-guidance": "self", "token-critic": "critic", "emigm": "emigm-paper"}
# samplers that need a component folder next to the generator: left out of the default list
# where the folder has none, refused by name
NEEDS = {"one-step": "one-step"}
GRID = 100  # images in each row's grid.png (10 per class); samples.npz keeps every scored one


def sample_options(name: str, model: str = "MODEL") -> str:
    """The ``maskgen sample`` options of demo row ``name`` (``model``: the demo's model folder)."""
    parts = []
    for key, value in DEMO_SAMPLERS[name].items():
        flag = {"fill": "--sampler", "model": "--model"}.get(key, "--" + key.replace("_", "-"))
        if key == "model":
            value = f"{model}/{value}"
        values = value if isinstance(value, (tuple, list)) else [value]
        parts += [flag] if value is True else [flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in values)]
    return " ".join(parts)


def demo_names(samplers: list[str] | None, folder: Path) -> list[str]:
    """The rows to run: ``samplers`` (old names mapped to new), else every row the folder can run."""
    if samplers is None:
        return [n for n in DEMO_SAMPLERS if n not in NEEDS or (folder / NEEDS[n]).is_dir()]
    names = [OLD_NAMES.get(n, n) for n in samplers]
    unknown = [n for n in names if n not in DEMO_SAMPLERS]
    if unknown:
        raise MaskgenError(f"unknown demo sampler {unknown[0]!r}; choose from {', '.join(DEMO_SAMPLERS)}")
    missing = [n for n in names if n in NEEDS and not (folder / NEEDS[n]).is_dir()]
    if missing:
        raise MaskgenError(f"demo sampler {missing[0]} needs {folder / NEEDS[missing[0]]}: make it with `maskgen distill --model {folder} --out {folder / NEEDS[missing[0]]}`")
    return list(dict.fromkeys(names))


def run_reference_demo(out: str | Path, num: int = 1000, seed: int = 0, samplers: list[str] | None = None, model_dir: str | Path | None = None, batch_size: int = 250) -> list[dict]:
    """Sample, score and time every sampler in ``DEMO_SAMPLERS`` on the reference models.

    Each row's folder holds what ``maskgen sample`` writes for the same options: every scored
    sample in ``samples.npz`` (images, labels, tokens), a ``samples.json`` that replays them
    exactly (``maskgen sample --spec demo/<row>/samples.json --out DIR``), and ``grid.png`` of
    the first ``GRID``."""
    from ..metrics import load_stats
    from ..metrics.evaluate import evaluate_images, load_network, reference_network
    from ..sampling.spec import SamplerSpec

    # every check before the first sampler runs: a bad name must not end a half-written demo
    integer("--num", num, 1)
    folder = (Path(model_dir) if model_dir else reference_dir()).resolve()
    names = demo_names(samplers, folder)
    stats_path = folder / "classifier" / "ref-stats.npz"
    # the table shows FD, score and accuracy only: drop the reference features so the
    # evaluation skips precision/recall and KID (a sizeable share of the 5-minute budget)
    models = {None: MaskGen.load(folder)}
    for sub in {DEMO_SAMPLERS[n].get("model") for n in names} - {None}:
        models[sub] = MaskGen.load(folder / sub)  # a missing model fails here, before any sampling
    specs = {n: SamplerSpec.from_options(**{k: v for k, v in DEMO_SAMPLERS[n].items() if k != "model"}) for n in names}
    ref = dataclasses.replace(load_stats(stats_path), features=None)
    net = load_network(reference_network(stats_path))
    num_classes = models[None].generator.config.num_classes
    labels = torch.arange(num) % num_classes  # what `maskgen sample` draws without --classes
    out = Path(out)
    rows = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}: {sample_options(name)}", flush=True)
        sub = DEMO_SAMPLERS[name].get("model")
        model, model_folder = models[sub], folder if sub is None else folder / sub
        start = time.perf_counter()
        images, result = model.generate(labels, model.sampler(specs[name]), seed=seed, batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
        m = evaluate_images(images.numpy(), labels.numpy(), ref, net, progress=False)
        identity = {"model": str(model_folder), "model_sha256": model.generator.sha256}
        run = {"seed": seed, "batch_size": batch_size, "num": num, "classes": None, **identity, "acceptance": 1.0, "rejection_classifier": None}
        options = sample_options(name, str(folder))
        record = {**identity, "preset": None, "sampler": specs[name].to_dict(), "run": run,
                  "demo": {"row": name, "sample_options": options, "fd_clf": m["fd_clf"], "cs": m["cs"], "class_accuracy": m["class_accuracy"]}}
        paths = save_samples(out / name, images, result, num_classes, record, grid_count=GRID)
        rows.append({"sampler": name, "options": options, "fd_clf": m["fd_clf"], "cs": m["cs"], "class_accuracy": m["class_accuracy"], "nfe": result.nfe,
                     "nfe_head": result.settings.get("nfe_head"), "sec_per_image": seconds / num, "grid": str(paths["grid"]), "samples": str(paths["json"])})
    save_json(out / "demo.json", {"model": str(folder), "num": num, "seed": seed, "rows": rows, "samplers": {n: DEMO_SAMPLERS[n] for n in names}})
    print(f"\n{num} samples per sampler, FD-clf and classifier score against Fashion-MNIST train statistics ({ref.count} images)\n")
    print("| sampler | FD-clf | classifier score | class accuracy | NFE | head passes | s/image | maskgen sample options |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        head = f"{r['nfe_head']:g}" if r.get("nfe_head") else "-"
        print(f"| {r['sampler']} | {r['fd_clf']:.2f} | {r['cs']:.2f} | {r['class_accuracy']:.3f} | {r['nfe']:g} | {head} | {r['sec_per_image']:.4f} | `{sample_options(r['sampler'])}` |")
    shipped = folder == REFERENCE.resolve()
    extra = "" if shipped else " (and --model MODEL to a row without one)"
    print(f"\nMODEL = {folder}; add --seed {seed} --batch-size {batch_size} --num {num}{extra} to draw the same images, or replay a row:")
    print(f"  maskgen sample --spec {out}/<sampler>/samples.json --out DIR")
    print(f"grids (the first {min(GRID, num)} images): {out}/<sampler>/grid.png; every scored sample: {out}/<sampler>/samples.npz")
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
