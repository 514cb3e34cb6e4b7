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

import torch
from torch import Tensor

from ..errors import MaskgenError
from ..models.joint import JointTransformer
from ..sampling.joint import JointDenoiser
from ..sampling.loop import SampleResult, Sampler
from ..tokenizers import load_tokenizer
from ..tokenizers.segmentation import SegmentationTokenizer
from .base import Pipeline

MODALITIES = ("image", "segmentation")


class JointGen(Pipeline):
    """A ``JointTransformer`` with its image tokenizer and segmentation tokenizer."""

    kinds = (JointTransformer.checkpoint_kind,)
    unit = "pairs"

    def __init__(self, generator: JointTransformer, tokenizer, seg_tokenizer: SegmentationTokenizer, folder: str | Path | None = None, record: dict | None = None):
        c = generator.config
        h, w = tokenizer.grid
        if (h * w, tokenizer.codebook_size) != (c.image_tokens, c.image_codes) or seg_tokenizer.codebook_size != c.seg_labels:
            raise MaskgenError("the joint generator does not match its tokenizers (image grid, codebook or number of labels)")
        super().__init__(generator, tokenizer, folder, record)
        self.seg_tokenizer = seg_tokenizer

    @classmethod
    def check_kind(cls, folder: Path, record: dict) -> None:
        kind = record.get("kind")
        if kind not in cls.kinds:
            raise MaskgenError(f"{folder} holds a {kind}, not a joint image+segmentation generator (train one with --modalities image,segmentation)")

    @classmethod
    def from_record(cls, folder: Path, record: dict, device) -> "JointGen":
        generator = JointTransformer.load(folder, map_location=device, record=record)
        return cls(generator, load_tokenizer(folder, map_location=device), SegmentationTokenizer.load(folder, map_location=device), folder, record)

    @property
    def image_size(self) -> int:
        return self.seg_tokenizer.config.image_size

    def denoiser(self) -> JointDenoiser:
        return JointDenoiser(self.generator)

    def critic(self, folder=None):
        raise MaskgenError("a Token-Critic is trained on a single-modality generator; this is a joint model")

    def self_guidance_module(self, folder=None):
        raise MaskgenError("a self-guidance module is trained on a single-modality generator; this is a joint model")

    def one_step_student(self, folder=None):
        raise MaskgenError("a one-step student is distilled from a single-modality generator; this is a joint model")

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
        labels = torch.zeros(num, dtype=torch.long)
        tokens, per_step, nfe, _ = self.run_chunks(labels, sampler, seed, batch_size, progress, given=given)
        pictures, label_maps = self.decode(tokens)
        settings = {**sampler.settings(), "nfe": nfe["nfe"], "seed": seed, "batch_size": batch_size,
                    "given": "image" if images is not None else "segmentation" if maps is not None else None}
        return pictures, label_maps, SampleResult(tokens, labels, nfe["nfe"], settings, per_step)

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(images uint8, maps int64) of finished joint states [B, N]."""
        codes, labels = self.generator.split(tokens.to(self.device))
        images = self.tokenizer.decode(codes.reshape(len(codes), *self.tokenizer.grid)).cpu()
        return images, self.seg_tokenizer.decode(labels).cpu()

    def read_given(self, modality: str, data: str, num: int | None = None):
        """The given ``modality`` ("image" or "segmentation") from ``data``: a folder of its PNGs
        (images, or label maps) or paired data (``data/segmentation.py``: ``mosaic-test:N``,
        ``images:DIR,labels:DIR``), whose other modality comes back as the ground truth.
        Returns (its tensor, the other modality's tensor or None), the first ``num`` of each."""
        from ..data.segmentation import is_segmentation_spec, open_segmentation, read_image_folder, read_label_folder

        if modality not in MODALITIES:
            raise MaskgenError(f"unknown modality {modality!r} in --given; choose from {', '.join(MODALITIES)}")
        c = self.tokenizer.config
        if is_segmentation_spec(data):
            pairs = open_segmentation(data, c.image_size, c.channels)
            mine, other = (pairs.images, pairs.maps) if modality == "image" else (pairs.maps, pairs.images)
        elif modality == "image":
            mine, other = read_image_folder(data, c.image_size, c.channels)[1], None
        else:
            mine, other = read_label_folder(data, c.image_size)[1], None
        if num is not None:
            if num < 1:
                raise MaskgenError(f"--num must be >= 1, got {num}")
            mine, other = mine[:num], None if other is None else other[:num]
        return mine, other
