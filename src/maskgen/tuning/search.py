"""``maskgen tune``: the sampler settings that give the best FD at each NFE budget.

maskgen's promise is the best samples for the fewest network evaluations from one model; the
papers each fix a sampler and report it at one cost. This module searches the pieces they
left apart: the fill rule (MaskGIT's confidence, Chang et al. 2022; eMIGM's ancestral rule,
You et al. 2025 Eq. 6; the Halton order, Besnier et al. 2025; Discrete Interpolants' Euler
step with argmax last, Hu & Ommer 2025 Alg. 1; Token-Critic, Lezama et al. 2022 Alg. 2), the
choice (Gumbel) and token temperatures, the schedule, and the guidance (none, classifier-free
guidance with eMIGM's time interval, self-guidance, Hur et al. 2024 Eq. 6, or both), keeping
only what the model folder has.

Budgets. At budget B a proposal gets the most steps whose NFE is at most B. The NFE is the
spec's own: one image sampled with it (``SampleResult.nfe``), so a CFG step counts 2, a
self-guidance step 2, a critic step 1 more, and a CFG interval only its guided steps. The
steps are never derived from a per-step cost guessed here.

Search. Random search, then local refinement: proposal i at budget B is drawn by
``random.Random(f"{seed}:{B}:{i}")``, so the same seed proposes the same trials in the same
order, and adding trials only adds. The papers' own samplers (``PAPER_SAMPLERS``) are scored
beside the random proposals. Then ``refine`` trials per budget each perturb the best trial
so far (``refine_trials``): random proposals spread over a dozen mostly conditional
dimensions rarely land near a good setting twice, and a neighbour of the best one is the
cheapest next guess (docs/tune.md says why not a model-based search). Each trial is scored
by FD on ``num`` samples at ``seed``; the best ``top`` per budget are scored again on
``rescore_num`` samples at each of ``seeds`` (other seeds than the search's, so the winner is
not picked on the images that rank it), and the lowest mean wins.

Every score is one line appended to ``DIR/trials.jsonl`` with a single write; a rerun reads
the file and skips what it holds (a torn last line from a crash is ignored and redone).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import MaskgenError
from ..sampling.spec import SamplerSpec
from ..validate import integers
from .space import MAX_ATTEMPTS, NFEMeter, SearchSpace, Trial, paper_trials, propose_trials


def parse_budgets(text: str) -> list[int]:
    """``"4,8,16"`` -> [4, 8, 16]; one line for a budget that is not a whole number >= 1."""
    budgets = []
    for item in str(text).split(","):
        item = item.strip()
        try:
            b = int(item)
        except ValueError:
            raise MaskgenError(f"unknown NFE budget {item!r} in --nfe: give whole numbers, e.g. 4,8,16") from None
        if b < 1:
            raise MaskgenError(f"--nfe: budget {b} is below one sampling step (a step costs at least 1 NFE)")
        budgets.append(b)
    if not budgets:
        raise MaskgenError("--nfe is empty")
    return sorted(set(budgets))


def parse_seeds(text: str) -> list[int]:
    seeds = integers("--seeds", text)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise MaskgenError(f"--seeds {text!r} repeats seed {repeated[0]}: a repeated seed rescores the same samples and shrinks the noise")
    return seeds


class TrialLog:
    """``DIR/trials.jsonl``: one scored spec per line, appended with a single write each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.torn = 0  # lines torn by a crash: their scores are redone
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    self.torn += 1
                    continue
                if not isinstance(record, dict) or "key" not in record:
                    self.torn += 1
                    continue
                self.records[record["key"]] = record

    @staticmethod
    def key(kind: str, spec: SamplerSpec, num: int, seed: int, budget: int, index: int | str | None = None) -> str:
        ident = {"kind": kind, "spec": spec.to_dict(), "num": num, "seed": seed, "budget": budget, "index": index}
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size and not self._ends_with_newline():
                line = b"\n" + line  # after a torn line, start a fresh one
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records[record["key"]] = record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


Scorer = Callable[[SamplerSpec, int, int], dict[str, float]]


def check_question(out: Path, question: dict[str, Any]) -> None:
    """A tune folder answers one question: the model (its generator's sha256), the reference
    statistics, the sample counts and seeds, recorded in ``tune.json`` by the first run; a
    rerun that asks another one is refused (its trials would be scored for the wrong model)."""
    from ..checkpoint import load_json, save_json

    path = out / "tune.json"
    if not path.is_file():
        if (out / "trials.jsonl").is_file():
            raise MaskgenError(f"{out} holds a trial log but no tune.json saying what it scored; give another --out")
        save_json(path, question)
        return
    before = load_json(path)
    changed = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in question.items() if before.get(k) != v]
    if changed:
        raise MaskgenError(f"{out} holds a tune of another question ({'; '.join(changed)}); give another --out")


def fd_scorer(model, ref: str | Path, batch_size: int = 250, device: str | torch.device = "cpu") -> Scorer:
    """FD (FD-clf with the classifier's statistics) of ``num`` samples of a spec at a seed,
    100 per class in turn, with its NFE and seconds per image. Only the Frechet distance is
    computed: precision and recall against the reference features cost more than the sampling
    and play no part in the choice."""
    from ..metrics import compute_stats, extract, fid_from_stats, load_stats
    from ..metrics.evaluate import load_reference_network

    stats = load_stats(ref)
    net = load_reference_network(ref, stats, device=device)
    classes = model.generator.config.num_classes

    def score(spec: SamplerSpec, num: int, seed: int) -> dict[str, float]:
        labels = torch.arange(num) % classes
        start = time.perf_counter()
        images, result = model.generate(labels, model.sampler(spec), seed=seed, batch_size=batch_size, progress=False)
        seconds = (time.perf_counter() - start) / num
        feats, _ = extract(net, images.numpy(), batch_size=batch_size, device=device, progress=False)
        fd = fid_from_stats(compute_stats(feats, pr_subset=None, network=net.name, network_sha256=net.sha256), stats)
        return {"fd": float(fd), "nfe": float(result.nfe), "sec_per_image": seconds}

    return score


@dataclass
class BudgetResult:
    budget: int
    trials: list[dict[str, Any]]  # search scores, best first
    rescored: list[dict[str, Any]] = field(default_factory=list)  # per candidate: spec, fds over seeds, mean, std; best first

    @property
    def winner(self) -> dict[str, Any]:
        return self.rescored[0]


def tune(
    model,
    score: Scorer,
    out: str | Path,
    budgets: list[int],
    trials: int = 20,
    num: int = 200,
    rescore_num: int = 500,
    seeds: list[int] = (1, 2, 3),
    seed: int = 0,
    top: int = 3,
    progress: bool = True,
    refine: int = 0,
    question: dict[str, Any] | None = None,
) -> list[BudgetResult]:
    """Random search at every budget (plus the papers' samplers), ``refine`` local steps from
    the best (``refine_trials``), then the best ``top`` rescored; resumable from ``out``."""
    from ..progress import progress as progress_bar

    for name, value in (("--trials", trials), ("--num", num), ("--rescore-num", rescore_num), ("--top", top)):
        if value < 1:
            raise MaskgenError(f"{name} must be >= 1, got {value}")
    if refine < 0:
        raise MaskgenError(f"--refine must be >= 0, got {refine}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_question(out, {"model_sha256": model.generator.sha256, "num": num, "rescore_num": rescore_num, "seeds": list(seeds), **(question or {})})
    log = TrialLog(out / "trials.jsonl")
    if log.torn:
        print(f"{log.path}: {log.torn} torn line(s) (a crash mid-write): those scores are redone", file=sys.stderr)
    space, meter = SearchSpace.for_model(model), NFEMeter(model)
    proposed = {b: paper_trials(model, meter, b) + propose_trials(space, meter, b, trials, seed) for b in budgets}
    jobs = [(t, log.key("trial", t.spec, num, seed, t.budget, t.index)) for b in budgets for t in proposed[b]]
    todo = [(t, k) for t, k in jobs if k not in log.records]
    for t, k in progress_bar(todo, desc="search", disable=not progress):
        log.append(trial_record(t, k, num, seed, score(t.spec, num, seed)))
    for b in budgets:
        jobs += refine_trials(space, meter, log, lambda t: score(t.spec, num, seed), [j for j in jobs if j[0].budget == b], refine, num, seed, progress)
    results = []
    for b in budgets:
        scored = sorted((log.records[k] for t, k in jobs if t.budget == b), key=lambda r: r["fd"])
        results.append(BudgetResult(b, scored))
    unique = {b.budget: _distinct(b.trials)[:top] for b in results}
    rescore = [(b, r, s, log.key("rescore", SamplerSpec.from_dict(r["spec"]), rescore_num, s, b)) for b in budgets for r in unique[b] for s in seeds]
    for b, r, s, k in progress_bar([j for j in rescore if j[3] not in log.records], desc="rescore", disable=not progress):
        scored = score(SamplerSpec.from_dict(r["spec"]), rescore_num, s)
        log.append({"key": k, "kind": "rescore", "budget": b, "num": rescore_num, "seed": s, "spec": r["spec"], **scored})
    for res in results:
        for r in unique[res.budget]:
            runs = [log.records[k] for b, rr, s, k in rescore if b == res.budget and rr is r]
            fds = [x["fd"] for x in runs]
            res.rescored.append({
                "spec": r["spec"], "search_fd": r["fd"], "fds": fds, "fd": statistics.mean(fds),
                "fd_std": statistics.stdev(fds) if len(fds) > 1 else None, "nfe": runs[0]["nfe"],
                "sec_per_image": statistics.mean(x["sec_per_image"] for x in runs),
            })
        res.rescored.sort(key=lambda c: c["fd"])
    return results


def trial_record(t: Trial, key: str, num: int, seed: int, scores: dict[str, float]) -> dict[str, Any]:
    return {"key": key, "kind": "trial", "budget": t.budget, "index": t.index, "num": num, "seed": seed, "spec": t.spec.to_dict(), **scores}


def refine_trials(space: SearchSpace, meter: NFEMeter, log: "TrialLog", score: Callable[[Trial], dict[str, float]],
                  jobs: list[tuple[Trial, str]], count: int, num: int, seed: int, progress: bool = True) -> list[tuple[Trial, str]]:
    """Local search after the random one: ``count`` trials at one budget, trial j a neighbour
    (``SearchSpace.perturb``, drawn by ``random.Random(f"{seed}:{B}:refine:{j}")``) of the
    lowest-FD trial scored so far at that budget, refinements included. Each parent follows
    from the scores in the log, so a rerun proposes the same trials and skips the scored ones."""
    from ..progress import progress as progress_bar

    done: list[tuple[Trial, str]] = []
    if not jobs or count == 0:
        return done
    budget = jobs[0][0].budget
    for j in progress_bar(range(count), desc=f"refine NFE {budget}", disable=not progress):
        parent = min((log.records[k] for _, k in jobs + done), key=lambda r: r["fd"])
        rng = random.Random(f"{seed}:{budget}:refine:{j}")
        for _ in range(MAX_ATTEMPTS):
            fitted = meter.fit(space.perturb(SamplerSpec.from_dict(parent["spec"]), rng), budget)
            if fitted is not None:
                break
        else:
            continue  # every neighbour drawn overran the budget: this refinement step is skipped
        t = Trial(budget, f"refine:{j}", fitted, meter(fitted))
        key = log.key("trial", t.spec, num, seed, budget, t.index)
        if key not in log.records:
            log.append(trial_record(t, key, num, seed, score(t)))
        done.append((t, key))
    return done


def _distinct(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in rows:
        key = json.dumps(r["spec"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def describe(spec: SamplerSpec | dict[str, Any]) -> str:
    """A spec in one short line: fill rule and its settings, steps, schedule, draw, guidance."""
    spec = SamplerSpec.from_dict(spec) if isinstance(spec, dict) else spec
    f = spec.fill
    parts = [f"{f.kind} ({f.brief()})" if f.brief() else f.kind]
    parts.append(f"T {spec.steps}, {spec.schedule}")
    if spec.draw.temperature != 1.0:
        parts.append(f"temp {spec.draw.temperature:g}")
    if spec.draw.argmax_last:
        parts.append("argmax last")
    for g in spec.guidance:
        window = f" on ({g.interval[0]:g}, {g.interval[1]:g}]" if g.interval else ""
        parts.append(f"{g.kind} {g.scale:g}{window}")
    return ", ".join(parts)
