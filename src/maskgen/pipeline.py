"""A trained model folder (generator + its tokenizer) and sampling from it in a few lines.

    model = MaskGen.load("runs/gen")
    sampler = model.sampler("confidence", steps=8, cfg=2.0)
    images, result = model.generate(torch.arange(10), sampler, seed=0)

A model folder holds ``generator.{safetensors,json}`` and ``tokenizer.{safetensors,json}``,
and optionally a ``self-guidance/`` folder with the TOAST module fine-tuned on that generator
(``maskgen finetune-sg``), which ``guidance="self"`` uses unless given another folder, and
a ``critic/`` folder with a Token-Critic (``maskgen train-critic``) for ``fill="critic"``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import save_json
from .errors import MaskgenError
from .images import class_grid_order, save_grid
from .models.toast import ToastModule
from .models.transformer import MaskedTransformer
from .models.critic import TokenCritic
from .sampling.critic import CriticFill
from .sampling.draw import TokenDraw
from .sampling.fill import make_fill
from .sampling.guidance import (
    BlurGuidance,
    ClassifierFreeGuidance,
    Guidance,
    GuidanceScale,
    SelfAttentionGuidance,
    SelfGuidance,
)
from .sampling.loop import SampleResult, Sampler
from .sampling.rejection import ClassifierRejection
from .schedules import ScaledSchedule
from .tokenizers import VQTokenizer


REFERENCE = Path(__file__).parent / "reference"


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
        if f.resolve() != (dst / f.name).resolve():
            shutil.copyfile(f, dst / f.name)


class MaskGen:
    """A generator and the tokenizer that decodes its tokens."""

    GUIDANCES = ("none", "cfg", "blur", "sag", "self")

    def __init__(self, generator: MaskedTransformer, tokenizer: VQTokenizer, folder: str | Path | None = None):
        if generator.config.codebook_size != tokenizer.codebook_size or tuple(generator.config.grid) != tuple(tokenizer.grid):
            raise MaskgenError(
                f"generator (codebook {generator.config.codebook_size}, grid {generator.config.grid}) does not match "
                f"tokenizer (codebook {tokenizer.codebook_size}, grid {tokenizer.grid})"
            )
        self.generator = generator
        self.tokenizer = tokenizer
        self.folder = Path(folder) if folder is not None else None
        self._components: dict[Path, ToastModule | TokenCritic] = {}

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "MaskGen":
        folder = Path(folder)
        if not folder.is_dir():
            raise MaskgenError(f"model folder does not exist: {folder}")
        generator = MaskedTransformer.load(folder).to(device).eval()
        tokenizer = VQTokenizer.load(folder).to(device).eval()
        return cls(generator, tokenizer, folder)

    def _component(self, folder: str | Path | None, name: str, verb: str, load):
        """A checkpoint trained on this generator: in ``folder`` or ``<model>/<name>``, loaded once."""
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

    def guidance(
        self,
        name: str,
        scale: float,
        ramp: str = "constant",
        interval: tuple[float, float] | None = None,
        blur_sigma: float = 1.0,
        sag_threshold: float = 1.0,
        sg_module: str | Path | None = None,
    ) -> Guidance | None:
        """One guidance by name: cfg, blur, sag, self (or none)."""
        if name not in self.GUIDANCES:
            raise MaskgenError(f"unknown guidance {name!r}; choose from {', '.join(self.GUIDANCES)}")
        g, s = self.generator, GuidanceScale(scale, ramp, interval)
        if name == "none":
            return None
        if name == "cfg":
            return ClassifierFreeGuidance(s, g.null_class)
        if name == "blur":
            return BlurGuidance(s, g.config.grid, blur_sigma)
        if name == "sag":
            return SelfAttentionGuidance(s, g.mask_id, sag_threshold)
        return SelfGuidance(s, self.self_guidance_module(sg_module))

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def sampler(
        self,
        fill: str = "confidence",
        steps: int = 8,
        schedule: str = "cosine",
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        argmax_last: bool = False,
        choice_temperature: float = 4.5,
        annealing: str = "linear",
        cfg: float = 0.0,
        cfg_ramp: str = "constant",
        cfg_interval: tuple[float, float] | None = None,
        guidance: str = "none",
        scale: float = 1.0,
        ramp: str = "constant",
        interval: tuple[float, float] | None = None,
        blur_sigma: float = 1.0,
        sag_threshold: float = 1.0,
        sg_module: str | Path | None = None,
        critic: str | Path | None = None,
        critic_noise: float = 1.0,
        critic_temperature: tuple[float, float] = (0.0, 1.0),
    ) -> Sampler:
        """Build the shared sampling loop from its pieces by name.

        ``cfg`` adds classifier-free guidance; ``guidance`` (cfg, blur, sag, self) with its own
        ``scale``, ``ramp`` and ``interval`` adds a second one, combined as in ``guidance.combine``.
        ``fill="critic"`` uses the Token-Critic in ``critic`` (default ``<model>/critic``) with
        selection noise ``critic_noise`` (K) and token temperature a * t + b.
        """
        if fill == "critic":
            fill_rule = CriticFill(self.critic(critic), critic_noise, critic_temperature)
        else:
            fill_rule = make_fill(fill, choice_temperature=choice_temperature, annealing=annealing)
        guidances = []
        if cfg != 0.0:
            if guidance == "cfg":
                raise MaskgenError("classifier-free guidance given twice: use either cfg=S or guidance='cfg'")
            guidances.append(ClassifierFreeGuidance(GuidanceScale(cfg, cfg_ramp, cfg_interval), self.generator.null_class))
        extra = self.guidance(guidance, scale, ramp, interval, blur_sigma, sag_threshold, sg_module)
        if extra is not None and scale != 0.0:
            guidances.append(extra)
        draw = TokenDraw(temperature, top_k, top_p, argmax_last)
        return Sampler(self.generator, fill_rule, draw, steps, schedule, guidances)

    def refiner(self, steps: int = 9, fraction: float = 0.6, schedule: str = "cosine", **kwargs) -> Sampler:
        """Token-Critic refinement of finished samples (004 Sec. 4.3): re-sample ``fraction`` of
        the tokens, the lowest-scored, at the first step, then fewer along ``schedule``."""
        return self.sampler("critic", steps, ScaledSchedule(schedule, fraction), **kwargs)

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
    ) -> tuple[Tensor, SampleResult]:
        """Sample images (uint8 [B, C, H, W]) for ``labels``, ``batch_size`` at a time, seeded.

        ``init`` (token grids [B, N]) refines finished samples instead of starting blank;
        ``rejection`` draws k candidates per image and keeps the classifier's favourite.
        """
        labels = torch.as_tensor(labels, dtype=torch.long)
        sampler.check_labels(labels)
        if init is not None:
            init = torch.as_tensor(init, dtype=torch.long).reshape(len(labels), -1)
        k = rejection.candidates if rejection else 1
        per_chunk = max(1, batch_size // k)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        tokens, images, nfe = [], [], {}
        for start in tqdm(range(0, len(labels), per_chunk), desc="sampling", disable=not progress):
            chunk = labels[start : start + per_chunk].repeat(k).to(self.device)
            res = sampler(chunk, gen, init=None if init is None else init[start : start + per_chunk].repeat(k, 1))
            imgs = self.tokenizer.decode(res.tokens.view(-1, *self.tokenizer.grid)).cpu()
            keep = rejection.select(imgs, chunk.cpu()) if rejection else torch.arange(len(chunk))
            tokens.append(res.tokens.cpu()[keep])
            images.append(imgs[keep])
            for key in ("nfe", "nfe_generator", "nfe_critic"):
                nfe[key] = nfe.get(key, 0.0) + res.settings[key] * len(chunk)
        nfe = {key: v / len(labels) for key, v in nfe.items()}
        settings = {**sampler.settings(), **nfe, "seed": seed, "batch_size": batch_size, "refined": init is not None}
        if rejection:
            settings.update(rejection.settings())
        result = SampleResult(torch.cat(tokens), labels, nfe["nfe"], settings)
        return torch.cat(images), result


def save_samples(out: str | Path, images: Tensor, result: SampleResult, num_classes: int, extra: dict | None = None) -> dict[str, Path]:
    """Write ``grid.png`` (a row per class), ``samples.npz`` and ``samples.json`` to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order, per_row = class_grid_order(result.labels, num_classes)
    paths = {"grid": save_grid(out / "grid.png", images[order], nrow=per_row), "npz": out / "samples.npz"}
    tmp = out / ".samples.tmp.npz"
    np.savez(tmp, images=images.numpy().astype(np.uint8), labels=result.labels.numpy(), tokens=result.tokens.numpy())
    tmp.replace(paths["npz"])
    paths["json"] = out / "samples.json"
    save_json(paths["json"], {"num": len(images), "nfe": result.nfe, "settings": result.settings, **(extra or {})})
    return paths
