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

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.continuous import ContinuousGenerator
from ..models.kinds import GENERATORS
from ..models.transformer import MaskedTransformer
from ..sampling.loop import SampleResult, Sampler, as_denoiser
from ..sampling.rejection import ClassifierRejection
from ..sampling.spec import SamplerSpec
from ..tokenizers.kinds import load_tokenizer
from .base import Pipeline


class MaskGen(Pipeline):
    """A generator and the tokenizer that decodes its tokens (code ids, or latents [B, N, d]
    for a continuous-token generator: any object with ``decode``, ``grid`` and ``token_dim``)."""

    kinds = (MaskedTransformer.checkpoint_kind, ContinuousGenerator.checkpoint_kind)

    def __init__(self, generator: MaskedTransformer | ContinuousGenerator, tokenizer, folder: str | Path | None = None, record: dict | None = None):
        g = generator.config
        if isinstance(generator, ContinuousGenerator):
            mine, theirs = (tuple(g.grid), g.token_dim), (tuple(tokenizer.grid), getattr(tokenizer, "token_dim", None))
            what = "grid, token dim"
        else:
            mine, theirs = (tuple(g.grid), g.codebook_size), (tuple(tokenizer.grid), getattr(tokenizer, "codebook_size", None))
            what = "grid, codebook"
        if mine != theirs:
            raise MaskgenError(f"generator ({what} {mine}) does not match tokenizer ({what} {theirs})")
        super().__init__(generator, tokenizer, folder, record)

    @classmethod
    def from_record(cls, folder: Path, record: dict, device) -> "MaskGen":
        generator = GENERATORS[record.get("kind", cls.kinds[0])].load(folder, map_location=device, record=record)
        return cls(generator, load_tokenizer(folder, map_location=device), folder, record)

    @property
    def continuous(self) -> bool:
        return isinstance(self.generator, ContinuousGenerator)

    def component(self, folder, name, verb, kind):
        if self.continuous:
            raise MaskgenError(f"{name} works on a discrete-token generator; this one draws continuous tokens")
        return super().component(folder, name, verb, kind)

    def denoiser(self):
        return as_denoiser(self.generator)

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
        them, every other position kept (inpainting: ``pipelines.inpainting.inpaint``);
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

        def decode_and_select(res: SampleResult, chunk: Tensor):
            imgs = self.tokenizer.decode(res.tokens if self.continuous else res.tokens.view(-1, *self.tokenizer.grid)).cpu()
            keep = rejection.select(imgs, chunk.cpu()) if rejection else torch.arange(len(chunk))
            return keep, imgs[keep]

        tokens, per_step, nfe, images = self.run_chunks(labels, sampler, seed, max(1, batch_size // k), progress, k, decode_and_select,
                                                        on_step, init=init, given=given)
        settings = {**sampler.settings(), **nfe, "seed": seed, "batch_size": batch_size, "refined": init is not None}
        if rejection:
            settings.update(rejection.settings())
        return torch.cat(images), SampleResult(tokens, labels, nfe["nfe"], settings, per_step)
