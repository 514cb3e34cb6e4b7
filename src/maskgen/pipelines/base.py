"""What every pipeline shares: a generator with the tokenizer(s) that decode its tokens, loaded
from a model folder, and the sampler and the chunked, seeded sampling run built on it.

``MaskGen`` (``maskgen.py``: class-conditional images, discrete or continuous tokens) and
``JointGen`` (``joint.py``: image + segmentation pairs) are the two implementations;
``load_model(folder)`` (``folder.py``) reads a folder's ``generator.json`` once and returns the
one that serves its ``kind``. A new model type is a new ``Pipeline`` subclass whose ``kinds``
name the generator kinds it serves, plus an implementation of the loop's contract
(``maskgen.sampling.denoiser``), never a new loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor

from ..checkpoint import load_json
from ..errors import MaskgenError
from ..progress import progress as progress_bar
from ..sampling.draw import ImageNoise
from ..sampling.loop import Sampler
from ..sampling.spec import SamplerSpec

NFE_KEYS = ("nfe", "nfe_generator", "nfe_critic", "nfe_head", "nfe_student")  # what a run averages over its images


def model_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskgenError(f"model folder does not exist: {folder}")
    return folder


class Pipeline:
    """A generator and its tokenizer(s), from a model folder (``folder``; None when built in memory)
    whose ``generator.json`` was read as ``record``."""

    kinds: ClassVar[tuple[str, ...]] = ()  # the generator kinds (generator.json "kind") it serves
    unit: ClassVar[str] = "images"  # what one sample is, in progress bars

    def __init__(self, generator, tokenizer, folder: str | Path | None = None, record: dict | None = None):
        self.generator = generator
        self.tokenizer = tokenizer
        self.folder = Path(folder) if folder is not None else None
        self.record = record

    @classmethod
    def load(cls, folder: str | Path, *, device: str | torch.device = "cpu"):
        """The model in ``folder``, refused in one line unless this pipeline serves its generator."""
        folder = model_folder(folder)
        record = load_json(folder / "generator.json")
        cls.check_kind(folder, record)
        return cls.from_record(folder, record, device)

    @classmethod
    def check_kind(cls, folder: Path, record: dict) -> None:
        kind = record.get("kind", cls.kinds[0])
        if kind not in cls.kinds:
            raise MaskgenError(f"{folder}/generator.json holds a {kind}, not one of {', '.join(cls.kinds)}")

    @classmethod
    def from_record(cls, folder: Path, record: dict, device: str | torch.device):
        """The model in ``folder`` whose ``generator.json`` is ``record`` (not read again)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def class_names(self) -> list | None:
        """The class names the generator's record holds, if any."""
        record = self.record
        if record is None and self.folder is not None and (self.folder / "generator.json").is_file():
            record = load_json(self.folder / "generator.json")
        return (record or {}).get("class_names")

    def denoiser(self):
        """The generator as the sampling loop sees it (``maskgen.sampling.denoiser``)."""
        raise NotImplementedError

    def sampler(self, spec: SamplerSpec | dict | None = None, **options: Any) -> Sampler:
        """The sampler ``spec`` describes (a ``SamplerSpec`` or its dict), or, without a spec,
        the one ``maskgen sample``'s flat ``options`` describe (``SamplerSpec.from_options``)."""
        if spec is not None and options:
            raise MaskgenError("give either a sampler spec or sampler options, not both")
        if spec is None:
            spec = SamplerSpec.from_options(**options)
        elif isinstance(spec, dict):
            spec = SamplerSpec.from_dict(spec)
        return spec.build(self)

    def run_chunks(self, labels: Tensor, sampler: Sampler, seed: int, per_chunk: int, progress: bool, candidates: int = 1,
                   select: Callable | None = None, on_step=None, **states: Tensor | None):
        """Sample ``labels`` ``per_chunk`` at a time, ``candidates`` per image: image i's candidate j
        draws from noise stream (seed, i, j) (candidate 0: (seed, i)), whatever the batching; one
        progress bar over every chunk's steps. ``states`` (``init``, ``given``: [B, ...]) are cut
        per chunk; ``select(result, chunk labels)`` -> (rows kept, what it made of them) picks among
        candidates. Returns (tokens, labels kept, masked counts per step, NFE per image by key, made)."""
        k = candidates
        tokens, history, nfe, made = [], [], {}, []
        starts = range(0, len(labels), per_chunk)
        bar = progress_bar(total=len(starts) * sampler.passes, desc=f"sampling {len(labels):,} {self.unit}", unit="step", disable=not progress)
        for start in starts:
            chunk = labels[start : start + per_chunk].repeat(k).to(self.device)
            n = len(chunk) // k
            keys = [(start + i,) if j == 0 else (start + i, j) for j in range(k) for i in range(n)]
            part = lambda state: None if state is None else state[start : start + per_chunk].repeat(k, *[1] * (state.dim() - 1))  # noqa: E731
            res = sampler(chunk, ImageNoise(seed, keys, self.device), progress=bar, on_step=on_step, **{name: part(s) for name, s in states.items()})
            keep, kept = select(res, chunk) if select is not None else (torch.arange(len(chunk)), None)
            tokens.append(res.tokens.cpu()[keep])
            history.append([[row[int(i)] for i in keep] for row in res.masked_per_step])
            made.append(kept)
            for key in NFE_KEYS:
                if key in res.settings:
                    nfe[key] = nfe.get(key, 0.0) + res.settings[key] * len(chunk)
        bar.close()
        steps = max(len(h) for h in history)  # chunks run the same number of steps
        per_step = [sum((h[i] if i < len(h) else [0] * len(h[0]) for h in history), []) for i in range(steps)]
        return torch.cat(tokens), per_step, {key: v / len(labels) for key, v in nfe.items()}, made

    # -- networks trained on the generator, which the critic, self-guidance and one-step specs build on
    def self_guidance_module(self, folder: str | Path | None = None):
        """The TOAST module in ``folder`` (default ``<model>/self-guidance``), checked against this generator."""
        from ..models.toast import ToastModule

        return self.component(folder, "self-guidance", "finetune-sg", ToastModule)

    def one_step_student(self, folder: str | Path | None = None):
        """The Di[M]O one-step student in ``folder`` (default ``<model>/one-step``), checked against this generator."""
        from ..models.one_step import OneStepStudent

        return self.component(folder, "one-step", "distill", OneStepStudent)

    def critic(self, folder: str | Path | None = None):
        """The Token-Critic in ``folder`` (default ``<model>/critic``), checked against this generator."""
        from ..models.critic import TokenCritic

        return self.component(folder, "critic", "train-critic", TokenCritic)

    def component(self, folder: str | Path | None, name: str, verb: str, kind):
        """The ``kind`` checkpoint in ``folder`` or ``<model>/<name>``, trained on this generator
        and checked against it (``kind.load(folder, generator)``), loaded once."""
        if folder is None:
            if self.folder is None:
                raise MaskgenError(f"no model folder to find {name}/ in: pass the {name} folder")
            folder = self.folder / name
        folder = Path(folder)
        if not (folder / f"{name}.safetensors").is_file():
            raise MaskgenError(f"no {name} checkpoint in {folder}: train one with `maskgen {verb} --model {self.folder or 'DIR'}`")
        loaded = self.__dict__.setdefault("_components", {})
        if folder not in loaded:
            loaded[folder] = kind.load(folder, self.generator)
        return loaded[folder]
