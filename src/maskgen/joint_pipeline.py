"""A joint image+segmentation model folder and sampling from it: joint, segmentation->image
or image->segmentation, all from one model (Discrete Interpolants, Hu & Ommer 2025, Sec.
3.4-3.5).

    model = JointGen.load("runs/joint-itm")
    sampler = model.sampler(steps=8, cfg=1.0)
    images, maps, result = model.generate(len(given_maps), sampler, seed=0, maps=given_maps)

A folder holds ``generator.*`` (a ``JointTransformer``), ``tokenizer.*`` (the image VQ
tokenizer) and ``seg-tokenizer.*`` (``tokenizers/segmentation.py``). A given modality is
encoded and placed in the loop's ``given`` state: the loop samples only the other
modality's positions and never changes the given ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .checkpoint import load_json, save_json
from .errors import MaskgenError
from .images import save_grid
from .progress import progress as progress_bar
from .models.joint import JointTransformer
from .sampling.draw import ImageNoise
from .sampling.joint import JointDenoiser
from .pipeline import masked_per_step_record
from .sampling.loop import SampleResult, Sampler
from .sampling.spec import SamplerSpec
from .tokenizers import load_tokenizer
from .tokenizers.segmentation import SegmentationTokenizer


class JointGen:
    """A ``JointTransformer`` with its image tokenizer and segmentation tokenizer."""

    def __init__(self, generator: JointTransformer, tokenizer, seg_tokenizer: SegmentationTokenizer, folder: str | Path | None = None):
        c = generator.config
        h, w = tokenizer.grid
        if (h * w, tokenizer.codebook_size) != (c.image_tokens, c.image_codes) or seg_tokenizer.codebook_size != c.seg_labels:
            raise MaskgenError("the joint generator does not match its tokenizers (image grid, codebook or number of labels)")
        self.generator, self.tokenizer, self.seg_tokenizer = generator, tokenizer, seg_tokenizer
        self.folder = Path(folder) if folder is not None else None

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> "JointGen":
        folder = Path(folder)
        if not folder.is_dir():
            raise MaskgenError(f"model folder does not exist: {folder}")
        kind = load_json(folder / "generator.json").get("kind")
        if kind != JointTransformer.checkpoint_kind:
            raise MaskgenError(f"{folder} holds a {kind}, not a joint image+segmentation generator (train one with --modalities image,segmentation)")
        generator = JointTransformer.load(folder).to(device).eval()
        return cls(generator, load_tokenizer(folder).to(device).eval(), SegmentationTokenizer.load(folder).to(device), folder)

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def image_size(self) -> int:
        return self.seg_tokenizer.config.image_size

    def denoiser(self) -> JointDenoiser:
        return JointDenoiser(self.generator)

    def critic(self, folder=None):
        raise MaskgenError("a Token-Critic is trained on a single-modality generator; this is a joint model")

    def self_guidance_module(self, folder=None):
        raise MaskgenError("a self-guidance module is trained on a single-modality generator; this is a joint model")

    def sampler(self, spec: SamplerSpec | dict | None = None, **options) -> Sampler:
        """The sampler a spec (or ``maskgen sample``'s flat options) describes, on this model."""
        if spec is not None and options:
            raise MaskgenError("give either a sampler spec or sampler options, not both")
        spec = SamplerSpec.from_options(**options) if spec is None else SamplerSpec.from_dict(spec) if isinstance(spec, dict) else spec
        return spec.build(self)

    def given_state(self, num: int, images: Tensor | None = None, maps: Tensor | None = None) -> Tensor | None:
        """The loop's partial state: given images (uint8 [B, C, S, S]) and/or maps (int [B, S, S])
        encoded in place, the mask id elsewhere; None when nothing is given."""
        if images is None and maps is None:
            return None
        for what, x in (("images", images), ("maps", maps)):
            if x is not None and len(x) != num:
                raise MaskgenError(f"{len(x)} given {what} for {num} samples")
        with torch.no_grad():
            codes = None if images is None else self.tokenizer.encode(self._check_images(images).to(self.device))
            labels = None if maps is None else self.seg_tokenizer.encode(torch.as_tensor(maps).to(self.device))
        return self.generator.join(codes, labels, num)

    def _check_images(self, images: Tensor) -> Tensor:
        c = self.tokenizer.config
        if images.dim() != 4 or tuple(images.shape[1:]) != (c.channels, c.image_size, c.image_size) or images.dtype != torch.uint8:
            raise MaskgenError(f"given images must be uint8 [B, {c.channels}, {c.image_size}, {c.image_size}], got {images.dtype} {list(images.shape)}")
        return images

    @torch.no_grad()
    def generate(self, num: int, sampler: Sampler, seed: int = 0, batch_size: int = 64, images: Tensor | None = None, maps: Tensor | None = None,
                 progress: bool = True) -> tuple[Tensor, Tensor, SampleResult]:
        """``num`` (image uint8 [B, C, S, S], map int64 [B, S, S]) pairs: both sampled, or the
        modality not given sampled for the given ``images`` or ``maps`` (which come back as given,
        up to their tokenizer). Image i draws from noise stream (seed, i) whatever the batching."""
        given = self.given_state(num, images, maps)
        if given is None and any(g.name == "cfg" for g in sampler.guidance):
            raise MaskgenError("CFG on a joint model guides by a given modality; with nothing given there is no condition: add --given or drop --cfg")
        tokens, nfe, history = [], 0.0, []
        starts = range(0, num, batch_size)
        bar = progress_bar(total=len(starts) * sampler.passes, desc=f"sampling {num:,} pairs", unit="step", disable=not progress)
        for start in starts:
            n = min(batch_size, num - start)
            noise = ImageNoise(seed, [(start + i,) for i in range(n)], self.device)
            labels = torch.zeros(n, dtype=torch.long, device=self.device)
            res = sampler(labels, noise, progress=bar, given=None if given is None else given[start : start + n])
            tokens.append(res.tokens.cpu())
            history.append(res.masked_per_step)
            nfe += res.nfe * n
        bar.close()
        tokens_all = torch.cat(tokens)
        pictures, label_maps = self.decode(tokens_all)
        settings = {**sampler.settings(), "nfe": nfe / num, "seed": seed, "batch_size": batch_size,
                    "given": "image" if images is not None else "segmentation" if maps is not None else None}
        per_step = [sum((h[i] for h in history), []) for i in range(min(len(h) for h in history))]
        return pictures, label_maps, SampleResult(tokens_all, torch.zeros(num, dtype=torch.long), nfe / num, settings, per_step)

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(images uint8, maps int64) of finished joint states [B, N]."""
        codes, labels = self.generator.split(tokens.to(self.device))
        images = self.tokenizer.decode(codes.reshape(len(codes), *self.tokenizer.grid)).cpu()
        return images, self.seg_tokenizer.decode(labels).cpu()


def save_label_map(path: Path, label_map: Tensor, palette: Tensor) -> None:
    """A palette PNG: a colour picture whose pixel values are the labels (reads back exactly)."""
    img = Image.fromarray(label_map.to(torch.uint8).numpy(), mode="P")
    img.putpalette(palette.flatten().tolist())
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def save_joint_samples(out: str | Path, model: JointGen, images: Tensor, maps: Tensor, result: SampleResult, extra: dict | None = None) -> dict[str, Path]:
    """``image/NNNNNN.png`` and ``segmentation/NNNNNN.png`` (palette PNGs, usable as a given
    folder), grids ``images.png``, ``segmentations.png`` and ``pairs.png`` (each map beside its
    image), ``samples.npz`` and ``samples.json``."""
    out = Path(out)
    for sub in ("image", "segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    palette = model.seg_tokenizer.palette.cpu()
    for i in range(len(images)):
        pic = images[i].permute(1, 2, 0).numpy()
        Image.fromarray(pic[..., 0] if pic.shape[-1] == 1 else pic).save(out / "image" / f"{i:06d}.png")
        save_label_map(out / "segmentation" / f"{i:06d}.png", maps[i], palette)
    coloured = model.seg_tokenizer.colour(maps)
    paths = {"images": save_grid(out / "images.png", images), "segmentations": save_grid(out / "segmentations.png", coloured)}
    # each map beside its image, 4 pairs a row: what a reader compares
    pairs = torch.stack([coloured, images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images], 1).flatten(0, 1)
    paths["pairs"] = save_grid(out / "pairs.png", pairs, nrow=8)
    paths["npz"] = out / "samples.npz"
    tmp = out / ".samples.tmp.npz"
    np.savez(tmp, images=images.numpy().astype(np.uint8), maps=maps.numpy().astype(np.uint8), tokens=result.tokens.numpy(), labels=result.labels.numpy())
    tmp.replace(paths["npz"])
    paths["json"] = out / "samples.json"
    save_json(paths["json"], {"num": len(images), "nfe": result.nfe, "settings": result.settings, "masked_per_step": masked_per_step_record(result), **(extra or {})})
    return paths
