"""A trained model folder (generator + its tokenizer) and sampling from it in a few lines.

    model = MaskGen.load("runs/gen")
    sampler = model.sampler(SamplerSpec(steps=8, guidance=[CFGSpec(scale=2.0)]))
    images, result = model.generate(torch.arange(10), sampler, seed=0)

``model.sampler`` also takes a spec as a dict (what ``samples.json`` stores) or the flat
option names of ``maskgen sample`` (``model.sampler(sampler="flow", steps=8, cfg=2.0)``).

A model folder holds ``generator.{safetensors,json}`` and ``tokenizer.{safetensors,json}``:
a discrete generator (``MaskedTransformer``) with a VQ tokenizer, or a continuous-token
generator (``ContinuousGenerator``, eMIGM/MAR) with a tokenizer whose ``decode`` takes
latents [B, N, d] (a KL autoencoder); each file's ``kind`` says which. Optionally it has a
``self-guidance/`` folder with the TOAST module fine-tuned on that generator
(``maskgen finetune-sg``), which a ``SelfSpec`` uses unless given another folder, and
a ``critic/`` folder with a Token-Critic (``maskgen train-critic``) for a ``CriticSpec``, and
a ``one-step/`` folder with a Di[M]O student (``maskgen distill``) for a ``OneStepSpec``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .checkpoint import file_sha256, load_json, save_json
from .errors import MaskgenError
from .images import class_grid_order, save_grid
from .progress import progress as progress_bar
from .models.continuous import ContinuousGenerator
from .models.toast import ToastModule
from .models.transformer import MaskedTransformer
from .models.critic import TokenCritic
from .models.one_step import OneStepStudent
from .sampling.draw import ImageNoise
from .sampling.loop import SampleResult, Sampler, as_denoiser
from .sampling.spec import SamplerSpec
from .sampling.rejection import ClassifierRejection
from .tokenizers.kinds import load_tokenizer


REFERENCE = Path(__file__).parent / "reference"
GENERATORS = {MaskedTransformer.checkpoint_kind: MaskedTransformer, ContinuousGenerator.checkpoint_kind: ContinuousGenerator}


def _kind(folder: Path, name: str, kinds: dict) -> str:
    """The ``kind`` recorded in ``folder/name.json`` (files written before kinds existed: the first)."""
    kind = load_json(folder / f"{name}.json").get("kind", next(iter(kinds)))
    if kind not in kinds:
        raise MaskgenError(f"{folder}/{name}.json holds a {kind}, not one of {', '.join(kinds)}")
    return kind


def reference_dir() -> Path:
    """The reference models shipped in the package (``maskgen/reference``)."""
    if not (REFERENCE / "generator.safetensors").is_file():
        raise MaskgenError(f"the reference models are missing from this install ({REFERENCE}); pass --model DIR")
    return REFERENCE


def copy_tokenizer(src: str | Path, dst: str | Path) -> None:
    """Put the tokenizer's files next to a generator so the model folder stands alone."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        f = src / f"tokenizer{suffix}"
        if not f.is_file():
            raise MaskgenError(f"no tokenizer checkpoint in {src} (missing {f.name})")
        target = dst / f.name
        if f.resolve() != target.resolve() and not (target.is_file() and file_sha256(target) == file_sha256(f)):
            shutil.copyfile(f, target)  # an identical copy (a resumed run's) is left untouched


class MaskGen:
    """A generator and the tokenizer that decodes its tokens (code ids, or latents [B, N, d]
    for a continuous-token generator: any object with ``decode``, ``grid`` and ``token_dim``)."""

    def __init__(self, generator: MaskedTransformer | ContinuousGenerator, tokenizer, folder: str | Path | None = None):
        g = generator.config
        if isinstance(generator, ContinuousGenerator):
            mine, theirs = (tuple(g.grid), g.token_dim), (tuple(tokenizer.grid), getattr(tokenizer, "token_dim", None))
            what = "grid, token dim"
        else:
            mine, theirs = (tuple(g.grid), g.codebook_size), (tuple(tokenizer.grid), getattr(tokenizer, "codebook_size", None))
            what = "grid, codebook"
        if mine != theirs:
            raise MaskgenError(f"generator ({what} {mine}) does not match tokenizer ({what} {theirs})")
        self.generator = generator
        self.tokenizer = tokenizer
        self.folder = Path(folder) if folder is not None else None
        self._components: dict[Path, ToastModule | TokenCritic | OneStepStudent] = {}

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "MaskGen":
        folder = Path(folder)
        if not folder.is_dir():
            raise MaskgenError(f"model folder does not exist: {folder}")
        generator = GENERATORS[_kind(folder, "generator", GENERATORS)].load(folder).to(device).eval()
        tokenizer = load_tokenizer(folder).to(device).eval()
        return cls(generator, tokenizer, folder)

    @property
    def continuous(self) -> bool:
        return isinstance(self.generator, ContinuousGenerator)

    def _component(self, folder: str | Path | None, name: str, verb: str, load):
        """A checkpoint trained on this generator: in ``folder`` or ``<model>/<name>``, loaded once."""
        if self.continuous:
            raise MaskgenError(f"{name} works on a discrete-token generator; this one draws continuous tokens")
        if folder is None:
            if self.folder is None:
                raise MaskgenError(f"no model folder to find {name}/ in: pass the {name} folder")
            folder = self.folder / name
        folder = Path(folder)
        if not (folder / f"{name}.safetensors").is_file():
            raise MaskgenError(f"no {name} checkpoint in {folder}: train one with `maskgen {verb} --model {self.folder or 'DIR'}`")
        if folder not in self._components:
            self._components[folder] = load(folder)
        return self._components[folder]

    def self_guidance_module(self, folder: str | Path | None = None) -> ToastModule:
        """The TOAST module in ``folder`` (default ``<model>/self-guidance``), checked against this generator."""
        return self._component(folder, "self-guidance", "finetune-sg", lambda f: ToastModule.load(f, self.generator).eval())

    def one_step_student(self, folder: str | Path | None = None) -> OneStepStudent:
        """The Di[M]O one-step student in ``folder`` (default ``<model>/one-step``), checked against this generator."""
        return self._component(folder, "one-step", "distill", lambda f: OneStepStudent.load(f, self.generator).eval())

    def critic(self, folder: str | Path | None = None) -> TokenCritic:
        """The Token-Critic in ``folder`` (default ``<model>/critic``)."""
        return self._component(folder, "critic", "train-critic", self._load_critic)

    def _load_critic(self, folder: Path) -> TokenCritic:
        critic = TokenCritic.load(folder).to(self.device).eval()
        c, g = critic.config, self.generator.config
        if (c.codebook_size, tuple(c.grid), c.num_classes) != (g.codebook_size, tuple(g.grid), g.num_classes):
            raise MaskgenError(
                f"critic in {folder} is for {c.codebook_size} codes, grid {c.grid}, {c.num_classes} classes; "
                f"the generator has {g.codebook_size}, {g.grid}, {g.num_classes}"
            )
        return critic

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def denoiser(self):
        """The generator as the sampling loop sees it (``sampling/denoiser.py``)."""
        return as_denoiser(self.generator)

    def sampler(self, spec: SamplerSpec | dict | None = None, **options) -> Sampler:
        """The sampler ``spec`` describes (a ``SamplerSpec`` or its dict), or, without a spec,
        the one ``maskgen sample``'s flat ``options`` describe (``SamplerSpec.from_options``)."""
        if spec is not None and options:
            raise MaskgenError("give either a sampler spec or sampler options, not both")
        if spec is None:
            spec = SamplerSpec.from_options(**options)
        elif isinstance(spec, dict):
            spec = SamplerSpec.from_dict(spec)
        return spec.build(self)

    @staticmethod
    def refiner_spec(steps: int = 9, fraction: float = 0.6, schedule: str = "cosine", **options) -> SamplerSpec:
        """Token-Critic refinement of finished samples (Lezama et al. 2022, Sec. 4.3):
        re-sample ``fraction`` of the tokens, the lowest-scored, at the first step, then fewer
        along ``schedule``; the critic fill rule with the schedule ``fraction*schedule``."""
        return SamplerSpec.from_options(**{**options, "sampler": "critic", "steps": steps, "schedule": f"{fraction:g}*{schedule}"})

    def refiner(self, **options) -> Sampler:
        """The sampler of ``refiner_spec(**options)``, on this model."""
        return self.refiner_spec(**options).build(self)

    @torch.no_grad()
    def generate(
        self,
        labels: Tensor,
        sampler: Sampler,
        seed: int = 0,
        batch_size: int = 64,
        progress: bool = True,
        init: Tensor | None = None,
        rejection: ClassifierRejection | None = None,
        given: Tensor | None = None,
        on_step: Callable[[int, Tensor], None] | None = None,
    ) -> tuple[Tensor, SampleResult]:
        """Sample images (uint8 [B, C, H, W]) for ``labels``, ``batch_size`` at a time, seeded.

        ``init`` (token grids [B, N]) refines finished samples instead of starting blank;
        ``given`` (states [B, N], or [B, N, d] latents, masked where to sample) completes
        them, every other position kept (inpainting: ``inpainting.inpaint``);
        ``rejection`` draws k candidates per image and keeps the classifier's favourite;
        ``on_step(i, x)`` sees each chunk's state after each step.
        """
        labels = torch.as_tensor(labels, dtype=torch.long)
        sampler.check_labels(labels)
        if init is not None and self.continuous:
            raise MaskgenError("refining finished samples needs a discrete-token generator and its Token-Critic")
        if init is not None:
            init = torch.as_tensor(init, dtype=torch.long).reshape(len(labels), -1)
        if given is not None and len(given) != len(labels):
            raise MaskgenError(f"a partial state to complete must be given per label ({len(labels)}), got {len(given)}")
        k = rejection.candidates if rejection else 1
        per_chunk = max(1, batch_size // k)
        tokens, images, nfe, history = [], [], {}, []
        starts = range(0, len(labels), per_chunk)
        # one bar over every chunk's steps: a one-chunk run moves at each step, not 0/1 until it ends
        bar = progress_bar(total=len(starts) * sampler.passes, desc=f"sampling {len(labels):,} images", unit="step", disable=not progress)
        for start in starts:
            chunk = labels[start : start + per_chunk].repeat(k).to(self.device)
            # image i's candidate j draws from stream (seed, i, j); candidate 0 is the plain sample
            n = len(chunk) // k
            keys = [(start + i,) if j == 0 else (start + i, j) for j in range(k) for i in range(n)]
            noise = ImageNoise(seed, keys, self.device)
            part = lambda state: None if state is None else state[start : start + per_chunk].repeat(k, *[1] * (state.dim() - 1))  # noqa: E731
            res = sampler(chunk, noise, progress=bar, init=part(init), given=part(given), on_step=on_step)
            imgs = self.tokenizer.decode(res.tokens if self.continuous else res.tokens.view(-1, *self.tokenizer.grid)).cpu()
            keep = rejection.select(imgs, chunk.cpu()) if rejection else torch.arange(len(chunk))
            tokens.append(res.tokens.cpu()[keep])
            history.append([[row[int(i)] for i in keep] for row in res.masked_per_step])
            images.append(imgs[keep])
            for key in ("nfe", "nfe_generator", "nfe_critic", "nfe_head", "nfe_student"):
                if key in res.settings:
                    nfe[key] = nfe.get(key, 0.0) + res.settings[key] * len(chunk)
        bar.close()
        nfe = {key: v / len(labels) for key, v in nfe.items()}
        settings = {**sampler.settings(), **nfe, "seed": seed, "batch_size": batch_size, "refined": init is not None}
        if rejection:
            settings.update(rejection.settings())
        steps = max(len(h) for h in history)  # chunks run the same number of steps
        per_step = [sum((h[i] if i < len(h) else [0] * len(h[0]) for h in history), []) for i in range(steps)]
        result = SampleResult(torch.cat(tokens), labels, nfe["nfe"], settings, per_step)
        return torch.cat(images), result


def masked_per_step_record(result: SampleResult) -> list[int] | list[list[int]]:
    """The masked count after each step: one list when every image has the same, else one
    list per image (what samples.json records, so a user sees which schedule ran)."""
    per_image = [list(col) for col in zip(*result.masked_per_step)] if result.masked_per_step else []
    if per_image and all(row == per_image[0] for row in per_image):
        return per_image[0]
    return per_image


def save_samples(out: str | Path, images: Tensor, result: SampleResult, num_classes: int, extra: dict | None = None,
                 grid_count: int | None = None) -> dict[str, Path]:
    """Write ``grid.png`` (a row per class; of the first ``grid_count`` images if given),
    ``samples.npz`` (every image) and ``samples.json`` to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown = slice(None) if grid_count is None else slice(0, grid_count)
    order, per_row = class_grid_order(result.labels[shown], num_classes)
    paths = {"grid": save_grid(out / "grid.png", images[shown][order], nrow=per_row), "npz": out / "samples.npz"}
    tmp = out / ".samples.tmp.npz"
    np.savez(tmp, images=images.numpy().astype(np.uint8), labels=result.labels.numpy(), tokens=result.tokens.numpy())
    tmp.replace(paths["npz"])
    paths["json"] = out / "samples.json"
    save_json(paths["json"], {"num": len(images), "nfe": result.nfe, "settings": result.settings, "masked_per_step": masked_per_step_record(result), **(extra or {})})
    return paths
