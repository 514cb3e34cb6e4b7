"""The one training loop: AdamW, warmup + cosine learning rate, gradient clipping, EMA
weights, bf16 autocast on CUDA, atomic checkpoints, exact resume, DistributedDataParallel,
gradient accumulation and optional ``torch.compile``.

Every source of randomness is a function of (seed, step): the batch indices come from a
per-epoch permutation and the objective's noise from a generator seeded per step. So a
resumed run replays exactly what an uninterrupted one would have done, and a run under
``torchrun`` with P processes sees the same global batch as one process.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..progress import progress as progress_bar

from ..checkpoint import load_json, load_tensors, save_json, save_tensors
from .checkpoints import STATE, StepCheckpoints, refuse_changed_run, resume_changes
from ..errors import MaskgenError
from ..validate import flag, integer, number, pair
from .context import Objective, StepContext
from ..devices import device_spec, distributed_setup, resolve_device


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 64  # global, over all processes
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    ema: float = 0.0  # 0 disables EMA weights
    seed: int = 0
    save_every: int = 500
    log_every: int = 25
    num_workers: int = 0
    bf16: bool = True  # autocast, CUDA only
    device: str = "auto"
    accumulate: int = 1  # micro-batches per optimizer step, per process (the global batch stays batch_size)
    compile: bool = False  # wrap the model in torch.compile


    def __post_init__(self) -> None:
        # Every field is checked here, so the CLI, a recipe and the Python API refuse the
        # same values before a model is built; a bad value found mid-run costs the run.
        o = "TrainConfig"
        for name in ("steps", "batch_size", "save_every", "log_every", "accumulate"):
            setattr(self, name, integer(name, getattr(self, name), 1, o))
        for name in ("warmup", "num_workers"):
            setattr(self, name, integer(name, getattr(self, name), 0, o))
        self.seed = integer("seed", self.seed, None, o)
        self.lr = number("lr", self.lr, 0.0, lo_open=True, owner=o)
        self.min_lr = number("min_lr", self.min_lr, 0.0, self.lr, owner=o)
        self.weight_decay = number("weight_decay", self.weight_decay, 0.0, owner=o)
        self.grad_clip = number("grad_clip", self.grad_clip, 0.0, owner=o)
        self.ema = number("ema", self.ema, 0.0, 1.0, hi_open=True, owner=o)
        self.betas = tuple(number(f"betas[{i}]", b, 0.0, 1.0, hi_open=True, owner=o) for i, b in enumerate(pair("betas", self.betas, o)))
        flag("bf16", self.bf16, o)
        flag("compile", self.compile, o)
        self.device = device_spec(self.device)


def learning_rate(step: int, c: TrainConfig) -> float:
    """Linear warmup to ``lr`` then cosine decay to ``min_lr`` at ``steps``."""
    if step < c.warmup:
        return c.lr * (step + 1) / c.warmup
    progress = (step - c.warmup) / max(1, c.steps - c.warmup)
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def seeded(seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` with its initial weights drawn from ``seed`` alone: the same recipe and seed
    give the same initial model, whatever ran before, and the caller's global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 7919 + stream * 104_729) % (2**63))
    return g


def check_until(until: int | None) -> int | None:
    """``--stop-at``: a step >= 1 or None. A stop at 0 would train and save nothing while the
    caller reports a saved model."""
    return None if until is None else integer("--stop-at", until, 1)


class StepBatches:
    """Yields (step, local batch) from ``start``; indices depend on (seed, step) only."""

    def __init__(self, dataset, batch_size: int, seed: int, rows: slice, num_workers: int = 0):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.rows = rows
        self.num_workers = num_workers
        if len(dataset) < batch_size:
            raise MaskgenError(f"dataset has {len(dataset)} items, fewer than the batch size {batch_size}")
        self.per_epoch = len(dataset) // batch_size

    def indices(self, step: int) -> Tensor:
        epoch, k = divmod(step, self.per_epoch)
        perm = torch.randperm(len(self.dataset), generator=step_generator(self.seed, epoch, stream=1))
        return perm[k * self.batch_size : (k + 1) * self.batch_size][self.rows]

    def views(self, step: int) -> Tensor | None:
        """The stored view (one of both flips) each item of the step reads, uniform per item as
        MAR (Li et al. 2024) draws it; for the global batch, then split; None with one view."""
        views = getattr(self.dataset, "views", 1)
        return None if views == 1 else torch.randint(views, (self.batch_size,), generator=step_generator(self.seed, step, stream=2))[self.rows]

    def iterate(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        if hasattr(self.dataset, "batch"):
            for step in range(start, stop):
                views = self.views(step)
                yield step, self.dataset.batch(self.indices(step)) if views is None else self.dataset.batch(self.indices(step), views)
            return
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=[self.indices(s).tolist() for s in range(start, stop)],
            num_workers=self.num_workers,
        )
        yield from zip(range(start, stop), loader)


class Trainer:
    """Optimises ``model`` on ``objective`` over ``dataset``; writes to ``out``.

    ``save_model(module, folder)`` writes the deliverable (EMA weights when EMA is on) in
    the model's own format; each save is a step folder (``training/checkpoints.py``) holding
    that and ``train_state.{safetensors,json}`` with what resuming needs: raw weights, EMA
    weights, AdamW state and the step. The model is published to ``out`` after each save.

    An objective with ``phases`` (names) and ``parameters(model, phase)`` is trained in phases:
    one AdamW per phase over that phase's parameters, and at every step each phase in turn
    computes its loss (``ctx.phase`` names it; its noise is its own stream of (seed, step)),
    clips and steps its own optimiser (Di[M]O's alternating student and auxiliary updates,
    ``training/distill.py``). Every other objective is one unnamed phase, as before.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        dataset,
        config: TrainConfig,
        out: str | Path,
        save_model: Callable[[nn.Module, Path], Any],
        trainable: Callable[[nn.Module], list[nn.Parameter]] | None = None,
        record: dict[str, Any] | None = None,
        tokens_per_item: int = 1,
    ):
        self.config = config
        self.out = Path(out)
        self.rank, self.world = distributed_setup()
        if config.batch_size % (self.world * config.accumulate):
            raise MaskgenError(
                f"batch size {config.batch_size} does not split over {self.world} processes x {config.accumulate} accumulated micro-batches"
            )
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.ema_model = copy.deepcopy(self.model).eval() if config.ema > 0 else None
        if self.ema_model is not None:
            self.ema_model.requires_grad_(False)
        self.phases: tuple[str | None, ...] = tuple(getattr(objective, "phases", ())) or (None,)
        if len(self.phases) > 1 and self.world > 1:
            raise MaskgenError("an objective trained in phases (distillation) runs in one process; launch it without torchrun")
        self.phase_params = {
            phase: objective.parameters(self.model, phase) if phase is not None  # type: ignore[attr-defined]
            else trainable(self.model) if trainable else [p for p in self.model.parameters() if p.requires_grad]
            for phase in self.phases
        }
        self.optimizers = {phase: self._adamw(params) for phase, params in self.phase_params.items()}
        self.params, self.optimizer = self.phase_params[self.phases[0]], self.optimizers[self.phases[0]]
        self.objective = objective
        local = config.batch_size // self.world
        self.rows = slice(self.rank * local, (self.rank + 1) * local)
        self.batches = StepBatches(dataset, config.batch_size, config.seed, self.rows, config.num_workers)
        self.save_model = save_model
        self.record = dict(record or {})
        self.tokens_per_item = tokens_per_item
        self.rate_unit = "tok/s" if tokens_per_item > 1 else "items/s"
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.checkpoints = StepCheckpoints(self.out)
        self.wrapped = self.model
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:  # checkpoints keep reading self.model, so no "_orig_mod." keys
            self.wrapped = torch.compile(self.wrapped)

    def _adamw(self, params: list[nn.Parameter]) -> torch.optim.AdamW:
        c = self.config
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.lr,
            betas=c.betas,
        )

    @staticmethod
    def _optim_prefix(phase: str | None) -> str:
        """``optim.`` (one unnamed phase: the layout every earlier checkpoint has) or ``optim.PHASE.``."""
        return "optim." if phase is None else f"optim.{phase}."

    # -- state ---------------------------------------------------------------------------
    def run_record(self) -> dict[str, Any]:
        """What decides what this run trains: the train settings, the model's config and the
        caller's ``record`` (objective, data fingerprint, the frozen networks' sha256 ...).
        Saved with every checkpoint; a resume whose record differs is refused
        (``checkpoints.resume_changes``), for every trainer alike."""
        config = getattr(self.model, "config", None)
        model = {"model": asdict(config)} if is_dataclass(config) and not isinstance(config, type) else {}
        return {"train": asdict(self.config), **model, **self.record}

    def state_tensors(self) -> dict[str, Tensor]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema_model is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema_model.state_dict().items()})
        for phase, optimizer in self.optimizers.items():
            for i, state in optimizer.state_dict()["state"].items():
                for k, v in state.items():
                    tensors[f"{self._optim_prefix(phase)}{i}.{k}"] = torch.as_tensor(v)
        return tensors

    def save(self) -> None:
        """Write a crash-consistent checkpoint (``training/checkpoints.py``) and publish the model."""
        if self.rank != 0:
            return

        def write(folder: Path) -> None:
            save_tensors(folder / f"{STATE}.safetensors", self.state_tensors())
            save_json(folder / f"{STATE}.json", {"step": self.step, "history": self.history[-200:], **self.run_record()})
            self.save_model(self.ema_model if self.ema_model is not None else self.model, folder)

        step_dir = self.checkpoints.commit(self.step, write)
        self.checkpoints.publish(step_dir)
        self.checkpoints.prune(step_dir)

    def resume(self) -> bool:
        """Load the newest complete checkpoint in ``out`` if there is one (republishing its model,
        in case a save was killed while publishing); return whether one was found."""
        latest = self.checkpoints.latest()
        if latest is None:
            return False
        meta = load_json(latest / f"{STATE}.json")
        refuse_changed_run(self.out, resume_changes(meta, self.run_record()))  # before anything is touched
        if self.rank == 0 and latest != self.out:
            self.checkpoints.publish(latest)
            self.checkpoints.prune(latest)
        path = latest / f"{STATE}.safetensors"
        tensors = load_tensors(path)
        from ..checkpoint import check_state_dict

        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        check_state_dict(self.model.state_dict(), model_state, f"the model being trained (resume from {self.out})")
        self.model.load_state_dict(model_state)
        if self.ema_model is not None:
            ema_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            check_state_dict(self.ema_model.state_dict(), ema_state, "the EMA model")
            self.ema_model.load_state_dict(ema_state)
        for phase, optimizer in self.optimizers.items():
            prefix = self._optim_prefix(phase)
            opt = optimizer.state_dict()
            state: dict[int, dict[str, Tensor]] = {}
            for k, v in tensors.items():
                if k.startswith(prefix) and k[len(prefix) :].split(".", 1)[0].isdigit():
                    i, name = k[len(prefix) :].split(".", 1)
                    state.setdefault(int(i), {})[name] = v.to(self.device) if name != "step" else v
            opt["state"] = state
            optimizer.load_state_dict(opt)
        self.step = int(meta["step"])
        self.history = list(meta.get("history", []))
        return True

    # -- loop ----------------------------------------------------------------------------
    @torch.no_grad()
    def update_ema(self) -> None:
        if self.ema_model is None:
            return
        # Warm the decay up so early EMA weights are not dominated by the random init.
        d = min(self.config.ema, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers()):
            e.copy_(b)

    def _to_device(self, batch):
        return tuple(x.to(self.device, non_blocking=True) if isinstance(x, Tensor) else x for x in batch)

    def micro_batches(self, batch) -> Iterator[tuple[slice, Any]]:
        """This rank's batch as ``accumulate`` micro-batches with their global rows (the objective
        keeps those rows of its global-batch noise, so the noise is the whole batch's)."""
        k = self.config.accumulate
        if k == 1:
            yield self.rows, batch
            return
        m = (self.rows.stop - self.rows.start) // k
        for j in range(k):
            part = tuple(x[j * m : (j + 1) * m] if isinstance(x, Tensor) else x for x in batch)
            yield slice(self.rows.start + j * m, self.rows.start + (j + 1) * m), part

    def accumulate_gradients(self, step: int, batch, autocast: bool, phase: str | None = None) -> dict[str, float]:
        """Backpropagate each micro-batch's loss / ``accumulate`` (summed: the whole batch's mean),
        DDP syncing on the last one only; return the metrics averaged over micro-batches.
        ``phase``: which of the objective's phases (its noise: stream 0 for the first, 100 + j
        for phase j, apart from the batch streams)."""
        c = self.config
        metrics: dict[str, float] = {}
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        j_phase = self.phases.index(phase)
        stream = 0 if j_phase == 0 else 100 + j_phase
        for j, (rows, part) in enumerate(self.micro_batches(batch)):
            ctx = StepContext(step=step, rng=step_generator(c.seed, step, stream), rows=rows, global_batch=c.batch_size, phase=phase)
            last = j == c.accumulate - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss, micro = self.objective(self.wrapped, part, ctx)
                self._check_finite(loss, step)
                (loss / c.accumulate if c.accumulate > 1 else loss).backward()
            for key, value in micro.items():
                metrics[key] = metrics.get(key, 0.0) + value / c.accumulate
        return metrics

    def fit(self, resume: bool = False, progress: bool = True, until: int | None = None) -> list[dict[str, float]]:
        """Train to ``config.steps`` (or stop early at step ``until``, saving, to resume later)."""
        c = self.config
        check_until(until)
        if resume and self.resume():
            if self.rank == 0:
                tqdm.write(f"resumed from {self.out} at step {self.step}")
        elif self.rank == 0:
            self.checkpoints.clear()
        self.model.train()
        autocast = self.device.type == "cuda" and c.bf16
        bar = progress_bar(total=c.steps, initial=self.step, desc="train", disable=not progress or self.rank != 0, dynamic_ncols=True)
        t0, items = time.perf_counter(), 0
        stop = c.steps if until is None else min(until, c.steps)
        for step, batch in self.batches.iterate(self.step, stop):
            self.step = step
            batch = self._to_device(batch)
            lr = learning_rate(step, c)
            metrics: dict[str, float] = {}
            for phase in self.phases:
                optimizer = self.optimizers[phase]
                for group in optimizer.param_groups:
                    group["lr"] = lr
                metrics.update(self.accumulate_gradients(step, batch, autocast, phase))
                if c.grad_clip > 0:
                    key = "grad_norm" if phase is None else f"grad_norm_{phase}"
                    metrics[key] = float(torch.nn.utils.clip_grad_norm_(self.phase_params[phase], c.grad_clip))
                optimizer.step()
            self.step = step + 1
            self.update_ema()
            items += c.batch_size
            if self.step % c.log_every == 0 or self.step == c.steps:
                rate = items * self.tokens_per_item / (time.perf_counter() - t0)
                self.history.append({"step": self.step, "lr": lr, **metrics})
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k in ("loss", "acc", "psnr", "usage")} | {self.rate_unit: f"{rate:.0f}"})
            bar.update(1)
            if self.step % c.save_every == 0 or self.step == stop:
                self.save()
        bar.close()
        self.model.eval()
        return self.history

    def _check_finite(self, loss: Tensor, step: int) -> None:
        bad = torch.tensor(0.0 if torch.isfinite(loss).item() else 1.0, device=self.device)
        if self.world > 1:
            dist.all_reduce(bad)
        if bad.item() > 0:
            last = self.checkpoints.latest()
            where = f"last good checkpoint: {last} (step {load_json(last / f'{STATE}.json')['step']})" if last else "no checkpoint was written yet"
            raise MaskgenError(f"loss is {loss.item()} at step {step}: training stopped; {where}")
