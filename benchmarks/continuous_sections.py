"""docs/results sections for eMIGM's continuous half (002, You et al. 2025), on models trained here.

- ``cnoise``: the eMIGM preset row on the MAE model at three seeds (the noise of these sections);
- ``mae``: 002 Fig. 2c, MAE encoder-decoder against one transformer (FD and training tokens/s);
- ``head``: 002 Fig. 3b, DPM-Solver++ against DDPM (temperature 1, and tuned on seed 1) at
  8/16/32 mask-prediction steps, and DPM-Solver's head steps 5/10/15 against DDPM's 100;
- ``ccfg``: 002 Fig. 3c / 8a on the continuous model: CFG at every step against (0.1, 0.3];
- ``versus``: continuous eMIGM against the discrete reference generator at equal transformer NFE.

Every setting is fixed here before a run, including the rule that picks DDPM's tuned
temperature (lowest FD at seed 1, 16 steps, over 0.8 / 0.9 / 1.0; reported at seed 0).

The continuous sections' models (a KL tokenizer, its latent cache, then the MAE and the
single-transformer generator of one recipe), and their command:

    maskgen train-tokenizer --config configs/kl-tokenizer-fmnist.yaml --out runs/ref/kl-tok
    maskgen encode --tokenizer runs/ref/kl-tok --data fashion-mnist --out runs/fmnist-latents
    maskgen train --config configs/emigm-continuous-fmnist.yaml --tokenizer runs/ref/kl-tok --data tokens:runs/fmnist-latents --out runs/ref/emigm
    maskgen train --config configs/emigm-continuous-fmnist.yaml --tokenizer runs/ref/kl-tok --data tokens:runs/fmnist-latents --out runs/emigm-single --arch single --depth 6
    python benchmarks/results.py --model src/maskgen/reference --ref src/maskgen/reference/classifier/ref-stats.npz \\
        --num 500 --threads 1 --sections cnoise,mae,head,ccfg,versus --continuous runs/ref/emigm,runs/emigm-single \\
        --out runs/results --doc docs/results-continuous.md
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING

import torch

import claims
from maskgen.models.continuous import ContinuousGenerator
from maskgen.training.context import StepContext
from maskgen.training.continuous import MaskedLatentObjective
from maskgen.training.masking import MaskedObjectiveConfig
from maskgen.training.trainer import step_generator

if TYPE_CHECKING:
    from results import Results, Section

CONTINUOUS_SECTIONS = ("cnoise", "mae", "head", "ccfg", "versus")
CFG = 3.0  # eMIGM's cfg 4 in u + cfg (c - u) is s = 3 in weak + (1 + s)(strong - weak)
DDPM_TEMPERATURES = (0.8, 0.9, 1.0)


def emigm(steps: int = 16, head: str = "dpm-solver", head_steps: int = 8, **kw) -> dict:
    """Ancestral sampling (002 Eq. 6) on the exp schedule with a head sampler: eMIGM's preset."""
    return dict(fill="ancestral", steps=steps, schedule="exp", head_sampler=head, head_steps=head_steps, **kw)


def training_rate(folder: str, threads: int, batch: int = 64, steps: int = 12, warmup: int = 3) -> float:
    """Training tokens/s of the architecture in ``folder`` (fresh weights, random latents, the
    objective it was trained with): forward, backward and an AdamW step, timed after warm-up."""
    from maskgen.checkpoint import load_json

    record = load_json(f"{folder}/generator.json")
    torch.set_num_threads(threads)
    model = ContinuousGenerator(ContinuousGenerator.config_class.from_dict(record["config"])).train()
    objective = MaskedLatentObjective(MaskedObjectiveConfig(**record["objective"]), model.null_class, model.config.timestep_input)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    c, g = model.config, torch.Generator().manual_seed(0)
    latents = torch.randn(batch, c.num_tokens, c.token_dim, generator=g)
    labels = torch.randint(c.num_classes, (batch,), generator=g)
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        ctx = StepContext(step=step, rng=step_generator(0, step), rows=slice(0, batch), global_batch=batch)
        loss, _ = objective(model, (latents, labels), ctx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch * c.num_tokens / (time.perf_counter() - start)


def cnoise_section(res: "Results", Section) -> "Section":
    s = Section("Continuous sampling noise: one row at three seeds", f"eMIGM's preset on the MAE model `{res.mae}`: ancestral, exp, 16 steps, DPM-Solver++ 8 head steps, no CFG; seeds 0, 1, 2.")
    for seed in (0, 1, 2):
        res.row(s, "emigm", f"seed {seed}", emigm(), model=res.mae, seed=seed)
    fd, sc = [r["fd"] for r in s.rows], [r["score"] for r in s.rows]
    res.cnoise = claims.Noise(statistics.stdev(fd), statistics.stdev(sc))
    s.about += f" Standard deviation: FD {res.cnoise.fd:.3f}, score {res.cnoise.score:.3f}; the continuous verdicts count a difference as real only beyond twice these."
    return s


def mae_section(res: "Results", Section) -> "Section":
    s = Section(
        "002 Fig. 2c: MAE encoder-decoder against one transformer",
        f"Two continuous generators of `configs/emigm-continuous-fmnist.yaml`, the MAE (`{res.mae}`, 3 encoder + 3 decoder "
        f"blocks) and one transformer of 6 blocks (`{res.single}`), same width, head and steps; eMIGM's preset at 8 and 16 steps. "
        f"Training tokens/s: forward + backward + AdamW on a batch of 64 with each model's recorded objective, at {res.args.threads} thread(s).",
        claims=[claims.mae_vs_single],
    )
    for name, folder in (("MAE", res.mae), ("single", res.single)):
        rate = training_rate(folder, res.args.threads)
        for k in (8, 16):
            res.row(s, name, f"{k} steps", emigm(k), model=folder)["train_tok_s"] = rate
    return s


def head_section(res: "Results", Section) -> list["Section"]:
    tune = Section(
        "002 Fig. 3b, tuning DDPM's temperature (seed 1)",
        "DDPM with 100 head steps at 16 mask steps, temperatures 0.8 / 0.9 / 1.0, on seed 1: the lowest FD picks the "
        "temperature the next table reports at seed 0 (MAR tunes it per model).",
    )
    for tau in DDPM_TEMPERATURES:
        res.row(tune, "ddpm 100", f"tau {tau:g}", emigm(16, "ddpm", 100, head_temperature=tau), model=res.mae, seed=1)
    best = min(tune.rows, key=lambda r: r["fd"])["settings"]["sampler"]["head"]["temperature"]
    s = Section(
        "002 Fig. 3b: DPM-Solver++ against DDPM in the diffusion head",
        f"The MAE model, ancestral exp sampling; DPM-Solver++ (8 head steps) against DDPM (100 head steps) at temperature 1 "
        f"and at the tuned {best:g}, at 8, 16 and 32 mask-prediction steps; then DPM-Solver's head steps 5, 10, 15 at 16 mask steps, "
        "and 50 (its ODE solved closely: the cause check).",
        claims=[claims.solver_vs_ddpm, claims.solver_steps, claims.solver_cause],
    )
    for k in (8, 16, 32):
        res.row(s, "dpm-solver 8", f"{k} steps", emigm(k), model=res.mae)
        res.row(s, "ddpm 100 tau 1", f"{k} steps", emigm(k, "ddpm", 100), model=res.mae)
        res.row(s, "ddpm 100 tuned", f"{k} steps", emigm(k, "ddpm", 100, head_temperature=best), model=res.mae)
    for h in (5, 10, 15, 50):
        res.row(s, f"dpm-solver {h}", "16 steps", emigm(16, head_steps=h), model=res.mae)
    s.plots.append(res.plot_nfe(s, "continuous_fd_vs_nfe_head.png", lambda r: r["method"]))
    return [tune, s]


def ccfg_section(res: "Results", Section) -> "Section":
    s = Section(
        "002 Fig. 3c / 8a on continuous tokens: CFG time interval",
        f"The MAE model, eMIGM's preset; CFG s = {CFG:g} (eMIGM's 4) on the head's noise prediction at every step against only "
        "when the step ends at s in (0.1, 0.3].",
        claims=[claims.cfg_interval],
    )
    for k in (8, 16):
        res.row(s, "cfg", f"{k} steps", emigm(k, cfg=CFG), model=res.mae)
        res.row(s, "cfg interval", f"{k} steps", emigm(k, cfg=CFG, cfg_interval=(0.1, 0.3)), model=res.mae)
    return s


def versus_section(res: "Results", Section) -> "Section":
    s = Section(
        "Continuous against discrete tokens at equal transformer NFE",
        f"The MAE model (eMIGM's preset, no CFG) against the discrete reference generator `{res.args.model}` with the same "
        "ancestral exp sampler and with MaskGIT's confidence rule (Gumbel 4.5), 8 and 16 steps, no CFG; same data, labels, "
        "seed and reference statistics. The cause check: each tokenizer's reconstructions of as many training images, "
        "scored the same way (the floor a generator over its tokens can reach).",
        claims=[claims.continuous_vs_discrete, claims.continuous_cause],
    )
    for k in (8, 16):
        res.row(s, "continuous", f"{k} steps", emigm(k), model=res.mae)
        res.row(s, "discrete ancestral", f"{k} steps", dict(fill="ancestral", steps=k, schedule="exp"))
        res.row(s, "discrete maskgit", f"{k} steps", dict(fill="confidence", steps=k, choice_temperature=4.5))
    for name, folder in (("KL tokenizer", res.mae), ("VQ tokenizer", res.args.model)):
        s.rows.append(reconstruction_row(res, name, folder))
    return s


def reconstruction_row(res: "Results", name: str, folder: str) -> dict:
    """The tokenizer's floor: FD of its reconstructions of ``--num`` training images (the first
    of each class in turn), scored like a sample set."""
    from maskgen.data import open_dataset
    from maskgen.metrics.evaluate import evaluate_images
    from maskgen.tokenizers import load_tokenizer

    tok = load_tokenizer(folder)
    data = open_dataset("fashion-mnist", image_size=tok.config.image_size, channels=tok.config.channels)
    labels = torch.as_tensor([data[i][1] for i in range(len(data))])
    per_class = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    order = torch.stack([idx[: res.args.num // len(per_class)] for idx in per_class], 1).flatten()
    images = torch.stack([data[int(i)][0] for i in order])
    with torch.no_grad():
        recon = torch.cat([tok.decode(tok.encode(images[i : i + 250])) for i in range(0, len(images), 250)])
    m = evaluate_images(recon.numpy(), labels[order].numpy(), res.bench.ref, res.bench.net, progress=False, kid_subsets=10)
    return {"method": name, "setting": "reconstructions", "fd": m["fd_clf"], "score": m["cs"], "class_accuracy": m["class_accuracy"],
            "precision": m.get("precision_clf"), "recall": m.get("recall_clf"), "key": f"recon-{name}"}
