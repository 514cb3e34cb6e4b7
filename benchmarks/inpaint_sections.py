"""docs/results-inpainting.md sections: inpainting (``maskgen.inpainting.inpaint``) and
conditional coupling (Discrete Interpolants, Hu & Ommer 2025, Sec. 3.6 Eq. 8, App. D).

- ``inoise``: the plain inpainting row (the uncoupled model of ``--coupling-models``,
  confidence fill, 50% masked) at three sampling seeds: the noise these sections judge by;
- ``coupling``: the generator trained with coupling against the one trained without (same
  recipe otherwise), each completing 25%, 50% and 75% of the tokens;
- ``isamplers``: every fill rule and self-guidance on the reference model at 50% masked and
  (nearly) equal NFE, with its own three-seed noise row.

The rules, fixed before any run:

- Inputs: the first ``--num`` images of the Fashion-MNIST *test* split (none was trained on);
  the completion is unconditional (the null class), so the class accuracy (the shipped
  classifier on the completed image, against the item's true class) asks whether the model
  recovered *what* the item is from the part it was given.
- Region: per image a uniformly random set of exactly round(f N) of the N = 64 tokens
  (f = 0.25, 0.5, 0.75), drawn from ``torch.Generator().manual_seed(REGION_SEED + image)``;
  the pixel mask is the union of those tokens' 4x4 patches, so the token region is exactly
  that set. Every row of a ratio uses the same regions.
- Sampler of the coupling rows: MaskGIT confidence, 16 steps, cosine, Gumbel 4.5 (the
  default confidence rule), the same for both models.
- Equal NFE for ``isamplers``: 16 for confidence, flow, ancestral and halton (16 steps), 16
  for self-guidance (8 steps, two passes each), 15 for Token-Critic (8 generator + 7 critic).
- Verdicts: a difference counts only beyond twice the seed noise's standard deviation (FD
  and class accuracy separately), as in ``claims.py``.

Inpainting and conditional coupling (``benchmarks/inpaint_sections.py``), the IMT recipe without and with coupling:
    maskgen train --config configs/di-imt-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/di-imt-800 --steps 800
    maskgen train --config configs/di-coupling-fmnist.yaml --tokenizer src/maskgen/reference --out runs/ref/coupling-800 --steps 800
    python benchmarks/results.py --model src/maskgen/reference --ref src/maskgen/reference/classifier/ref-stats.npz \\
        --num 500 --threads 1 --sections inoise,coupling,isamplers --coupling-models runs/ref/di-imt-800,runs/ref/coupling-800,runs/ref/di-imt-800-s1,runs/ref/coupling-800-s1 \\
        --out runs/results --doc docs/results-inpainting.md
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from typing import TYPE_CHECKING

import torch

import claims
from maskgen.metrics.evaluate import evaluate_images
from maskgen.pipelines.inpainting import inpaint

if TYPE_CHECKING:
    from results import Results, Section

INPAINT_SECTIONS = ("inoise", "coupling", "isamplers")
REGION_RULE = (
    "Every row completes the first `--num` Fashion-MNIST test images (none trained on), unconditionally (the null class); "
    "the class accuracy is the classifier's on the completed image against the item's true class. The region of image i is "
    "a uniformly random set of exactly round(f 64) of its 64 tokens (`torch.randperm` seeded 1234 + i), the same in every row "
    "of a ratio f; pixels outside it are the input's."
)
RATIOS = (0.25, 0.5, 0.75)
REGION_SEED = 1234
STEPS = 16
CONFIDENCE = dict(fill="confidence", steps=STEPS, schedule="cosine", choice_temperature=4.5)
SAMPLERS = {
    "confidence": CONFIDENCE,
    "critic": dict(fill="critic", steps=STEPS // 2, schedule="cosine"),
    "flow": dict(fill="flow", steps=STEPS, schedule="cosine"),
    "ancestral": dict(fill="ancestral", steps=STEPS, schedule="cosine"),
    "halton": dict(fill="halton", steps=STEPS, schedule="cosine"),
    "self-guidance": dict(CONFIDENCE, steps=STEPS // 2, guidance="self", scale=1.0),
}


class Noise:
    """Seed-to-seed standard deviation of FD and of class accuracy on one inpainting row."""

    def __init__(self, rows: list[dict]):
        self.fd = statistics.stdev(r["fd"] for r in rows)
        self.acc = statistics.stdev(r["class_accuracy"] for r in rows)

    def real(self, delta: float, metric: str = "fd") -> bool:
        return abs(delta) > 2 * getattr(self, metric)


def test_items(num: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    from maskgen.data.spec import FASHION_MNIST_DIR, load_idx_dataset

    data = load_idx_dataset(FASHION_MNIST_DIR, split="test", image_size=size, channels=1)
    return torch.stack([data[i][0] for i in range(num)]), torch.tensor([int(data[i][1]) for i in range(num)])


def regions(num: int, ratio: float, grid: int = 8, patch: int = 4) -> torch.Tensor:
    """Pixel masks [num, H, W]: per image round(ratio N) random tokens' patches (module docstring)."""
    n = grid * grid
    out = torch.zeros(num, grid * patch, grid * patch, dtype=torch.bool)
    for i in range(num):
        cells = torch.randperm(n, generator=torch.Generator().manual_seed(REGION_SEED + i))[: round(ratio * n)]
        for c in cells.tolist():
            r, k = divmod(c, grid)
            out[i, r * patch : (r + 1) * patch, k * patch : (k + 1) * patch] = True
    return out


def inpaint_row(res: "Results", s: "Section", method: str, setting: str, spec: dict, model: str, ratio: float, seed: int = 0) -> dict:
    """One row: the ``--num`` test images completed in their ``ratio`` regions, scored; cached
    in the ``Bench`` row cache by everything that determines it."""
    from maskgen.sampling.spec import SamplerSpec

    b = res.bench
    spec_dict = SamplerSpec.from_options(**spec).to_dict()
    identity = {"inpaint": "test-split unconditional", "model": model, "ratio": ratio, "region_seed": REGION_SEED,
                "seed": seed, "num": res.args.num, "spec": spec_dict}
    key = "inpaint-" + hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    mg = b.model_for(model)
    row = b._cached(key)
    if row is None or row.get("generator_sha256") != mg.generator.sha256:
        images, labels = res.inpaint_items
        null = torch.full_like(labels, mg.generator.config.num_classes)
        start = time.perf_counter()
        out, result = inpaint(mg, images, regions(len(images), ratio), null, mg.sampler(spec_dict), seed=seed, batch_size=res.args.batch_size)
        seconds = time.perf_counter() - start
        row = score(res, out, labels)
        row.update(nfe=result.nfe, sec_per_image=seconds / len(images), settings=result.settings, tokens=result.tokens.numpy(),
                   key=key, generator_sha256=mg.generator.sha256)
        b._store(row)
    row.update(method=method, setting=setting)
    s.rows.append(row)
    b.rows.append(row)
    print(f"[inpaint] {method} {setting}: FD {row['fd']:.2f} acc {row['class_accuracy']:.3f} NFE {row['nfe']:g}", flush=True)
    return row


def score(res: "Results", images: torch.Tensor, labels: torch.Tensor) -> dict:
    m = evaluate_images(images.numpy(), labels.numpy(), res.bench.ref, res.bench.net, progress=False, kid_subsets=10)
    return {"fd": m["fd_clf"], "score": m["cs"], "class_accuracy": m["class_accuracy"], "precision": m.get("precision_clf"), "recall": m.get("recall_clf")}


def floor_row(res: "Results", name: str) -> dict:
    """The test images themselves, or their reconstructions by the uncoupled model's tokenizer,
    scored like a completed set (cached like a row)."""
    import numpy as np

    tok = res.bench.model_for(res.uncoupled).tokenizer
    key = "inpaint-floor-" + hashlib.sha1(json.dumps([name, res.args.num, str(tok.sha256)]).encode()).hexdigest()[:16]
    row = res.bench._cached(key)
    if row is None:
        images, labels = res.inpaint_items
        if name == "VQ reconstructions":
            with torch.no_grad():
                images = torch.cat([tok.decode(tok.encode(images[i : i + 250])) for i in range(0, len(images), 250)])
        row = {**score(res, images, labels), "key": key, "tokens": np.zeros(0)}
        res.bench._store(row)
    row.update(method=name, setting="0% masked")
    return row


def setup(res: "Results") -> None:
    if not hasattr(res, "inpaint_items"):
        res.inpaint_items = test_items(res.args.num)
        folders = res.args.coupling_models.split(",")
        res.pairs = list(zip(folders[0::2], folders[1::2]))  # the first pair is judged; the rest are training-seed replicates
        res.uncoupled, res.coupled = res.pairs[0]


def inoise_section(res: "Results", Section) -> "Section":
    setup(res)
    s = Section("Inpainting noise: one row at three seeds", f"{REGION_RULE} The uncoupled model `{res.uncoupled}`, confidence fill (16 steps), 50% of the tokens masked; sampling seeds 0, 1, 2, regions fixed.")
    for seed in (0, 1, 2):
        inpaint_row(res, s, "uncoupled", f"50%, seed {seed}", CONFIDENCE, res.uncoupled, 0.5, seed)
    res.inoise = Noise(s.rows)
    s.about += f" Standard deviation: FD {res.inoise.fd:.3f}, class accuracy {res.inoise.acc:.4f}; the coupling verdict counts a difference only beyond twice these."
    return s


def coupling_section(res: "Results", Section) -> "Section":
    from maskgen.training.checkpoints import StepCheckpoints

    setup(res)
    (cr, cs), (ur, us) = trained(res.coupled), trained(res.uncoupled)
    s = Section(
        "003 Sec. 3.6 / App. D: conditional coupling, inpainting with and without it",
        f"`{res.coupled}` (`configs/di-coupling-fmnist.yaml`, coupling R = {cr:g}: per image a ratio r ~ U[0, R] of the tokens "
        f"kept clean in training and left out of the loss; {cs} steps) against `{res.uncoupled}` (`configs/di-imt-fmnist.yaml`, "
        f"identical otherwise, coupling {ur:g}; {us} steps), completing 25%, 50% and 75% of the tokens of the test images "
        "unconditionally with the confidence rule, 16 steps. The floor rows: the test images themselves, and their VQ "
        f"reconstructions (no token re-sampled). Trained with `maskgen train --config configs/di-coupling-fmnist.yaml "
        f"--tokenizer src/maskgen/reference --out {res.coupled} --steps {cs}` and the same with `configs/di-imt-fmnist.yaml` "
        f"and `--out {res.uncoupled} --steps {us}` (the recipes' 4000 steps cut equally for CPU time).",
    )
    for ratio in RATIOS:
        for name, folder in (("uncoupled", res.uncoupled), ("coupled", res.coupled)):
            inpaint_row(res, s, name, f"{ratio:.0%} masked", CONFIDENCE, folder, ratio)
    for j, (uncoupled, coupled) in enumerate(res.pairs[1:], 2):
        for ratio in RATIOS:
            for name, folder in ((f"uncoupled #{j}", uncoupled), (f"coupled #{j}", coupled)):
                inpaint_row(res, s, name, f"{ratio:.0%} masked", CONFIDENCE, folder, ratio)
    for name in ("test images", "VQ reconstructions"):
        s.rows.append(floor_row(res, name))
    s.claims.append(lambda r, n: coupling_claim(r, getattr(res, "inoise", None)))
    for j, (uncoupled, coupled) in enumerate(res.pairs[1:], 2):
        seeds = [(StepCheckpoints(f).record() or {}).get("train", {}).get("seed", "?") for f in (uncoupled, coupled)]
        s.about += f" Replicate pair #{j}: `{uncoupled}` and `{coupled}`, the same commands with `--seed {seeds[0]}` / `--seed {seeds[1]}` and these `--out`."
        s.claims.append(lambda r, n, j=j: replicate_note(r, j))
    return s


def trained(folder: str) -> tuple[float, int | str]:
    """(coupling ratio, training steps) as the run in ``folder`` recorded them."""
    from maskgen.checkpoint import load_json
    from maskgen.training.checkpoints import StepCheckpoints

    steps = (StepCheckpoints(folder).record() or {}).get("train", {}).get("steps", "?")
    return load_json(f"{folder}/generator.json")["objective"].get("coupling", 0.0), steps


def coupling_claim(r: claims.Rows, n: Noise | None) -> str:
    """Agrees: the coupled model's FD is lower beyond the noise at two or more ratios and its
    class accuracy nowhere lower beyond the noise; partly: lower beyond the noise at one."""
    n = n or Noise([{"fd": 0.0, "class_accuracy": 0.0}] * 2)
    parts, better, worse_acc = [], 0, False
    for ratio in RATIOS:
        u, c = r["uncoupled", f"{ratio:.0%} masked"], r["coupled", f"{ratio:.0%} masked"]
        d_fd, d_acc = c["fd"] - u["fd"], c["class_accuracy"] - u["class_accuracy"]
        better += d_fd < 0 and n.real(d_fd)
        worse_acc |= d_acc < 0 and n.real(d_acc, "acc")
        parts.append(f"{ratio:.0%}: FD {u['fd']:.2f} → {c['fd']:.2f}, accuracy {u['class_accuracy']:.3f} → {c['class_accuracy']:.3f}")
    return (
        f"{claims.verdict(better >= 2 and not worse_acc, better >= 1)} with 003 App. D (coupling trains the network to "
        f"\"better unmask the data when encountering a specific ratio of masked data\"; 003 gives no number): uncoupled → "
        f"coupled at {'; '.join(parts)}. FD lower beyond twice the noise (σ {n.fd:.3f}) at {better} of 3 ratios; class "
        f"accuracy lower beyond twice its noise (σ {n.acc:.4f}) at any ratio: {'yes' if worse_acc else 'no'}."
    )


def replicate_note(r: claims.Rows, j: int) -> str:
    """Not a verdict (the rule judges the first pair): the same differences for replicate pair ``j``."""
    diffs = []
    for ratio in RATIOS:
        u, c = r[f"uncoupled #{j}", f"{ratio:.0%} masked"], r[f"coupled #{j}", f"{ratio:.0%} masked"]
        diffs.append(f"{ratio:.0%}: FD {u['fd']:.2f} → {c['fd']:.2f}, accuracy {u['class_accuracy']:.3f} → {c['class_accuracy']:.3f}")
    return f"Replicate pair #{j} (another training seed; no verdict of its own): uncoupled → coupled at {'; '.join(diffs)}."


def isamplers_section(res: "Results", Section) -> list["Section"]:
    setup(res)
    model = res.args.model
    noise = Section("Inpainting samplers: noise", f"The reference model `{model}`, confidence fill (16 steps), 50% masked; seeds 0, 1, 2.")
    for seed in (0, 1, 2):
        inpaint_row(res, noise, "confidence", f"seed {seed}", CONFIDENCE, model, 0.5, seed)
    sn = Noise(noise.rows)
    noise.about += f" Standard deviation: FD {sn.fd:.3f}, class accuracy {sn.acc:.4f}."
    s = Section(
        "Inpainting with every sampler at equal NFE",
        f"The reference model `{model}` with its critic and self-guidance (L_aux) module, 50% of the test images' tokens "
        "completed unconditionally, cosine schedule; 16 steps, or 8 for the critic (NFE 8 + 7) and self-guidance (2 passes a step).",
    )
    for name, spec in SAMPLERS.items():
        inpaint_row(res, s, name, "50% masked", spec, model, 0.5)
    s.claims.append(lambda r, n: samplers_claim(r, sn))
    return [noise, s]


def samplers_claim(r: claims.Rows, n: Noise) -> str:
    """Token-Critic (004) and self-guidance (000) were proposed as better than the confidence
    rule; here: does that carry over to inpainting at equal NFE, beyond the noise?"""
    base = r["confidence", "50% masked"]
    said = []
    for name in SAMPLERS:
        if name != "confidence":
            d = r[name, "50% masked"]["fd"] - base["fd"]
            said.append(f"{name} {d:+.2f}{'' if n.real(d) else ' (within noise)'}")
    crit, sg = (r[m, "50% masked"]["fd"] - base["fd"] for m in ("critic", "self-guidance"))
    ok = [d < 0 and n.real(d) for d in (crit, sg)]
    return (
        f"{claims.verdict(all(ok), any(ok))} with 004 and 000 (Token-Critic and self-guidance sample better than the "
        f"confidence rule) when inpainting at equal NFE: FD against confidence's {base['fd']:.2f}: {', '.join(said)} "
        f"(noise σ {n.fd:.3f})."
    )
