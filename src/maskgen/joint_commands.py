"""The joint image+segmentation model on the command line (Discrete Interpolants, Hu & Ommer
2025, Sec. 3.4-3.5): the options ``train``, ``sample`` and ``eval`` gain, and what they do
with a joint model. ``maskgen.cli`` and ``sampling_commands`` call in here with one line each.

    maskgen train --modalities image,segmentation --data mosaic --tokenizer REF --out J
    maskgen sample --model J --out S                            # joint: both modalities
    maskgen sample --model J --given segmentation:DIR --out S   # segmentation -> image
    maskgen sample --model J --given image:DIR --cfg 1 --out S  # image -> segmentation
    maskgen eval --model J --given image:mosaic-test:500        # mIoU, pixel accuracy
    maskgen eval --model J --given segmentation:mosaic-test:500 # FD-clf of the images
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import MaskgenError

MODALITIES = ("image", "segmentation")


def add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("joint image+segmentation model (003 Sec. 3.4; --data mosaic[:N] or images:DIR,labels:DIR)")
    g.add_argument("--modalities", default=None, help="image (default) or image,segmentation: a joint model over both token sequences")
    g.add_argument("--independent-times", action="store_true", default=None, help="joint: a time per modality (003 appendix) instead of one shared t (003 Eq. 5)")
    g.add_argument("--modality-given", type=float, default=None, help="joint: probability that one modality is kept whole (the conditional case; default 0.1). --cond-drop is each modality's dropout to fully masked")


def add_given_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--given", default=None, help="joint model: MODALITY:DATA, the modality kept fixed (image or segmentation) and a folder of its PNGs or a data spec (mosaic-test:N, images:DIR,labels:DIR)")


def parse_modalities(text: str | None) -> tuple[str, ...]:
    names = tuple(m.strip() for m in (text or "image").split(",") if m.strip())
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise MaskgenError(f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}")
    if names not in (("image",), MODALITIES):
        raise MaskgenError(f"--modalities must be image or image,segmentation, got {text!r}")
    return names


def is_joint_training(args: argparse.Namespace) -> bool:
    """Whether ``train`` is asked for a joint model; joint-only options without it are refused."""
    joint = parse_modalities(args.modalities) == MODALITIES
    only = [n for n in ("independent_times", "modality_given") if getattr(args, n) is not None]
    if only and not joint:
        raise MaskgenError(f"--{only[0].replace('_', '-')} applies to a joint model: add --modalities image,segmentation")
    return joint


def train(args: argparse.Namespace, pick, continuous_only: tuple[str, ...]) -> None:
    from .models.transformer import GeneratorConfig
    from .training.joint import JointObjectiveConfig, train_joint
    from .training.trainer import TrainConfig

    given = [f"--{n.replace('_', '-')}" for n in continuous_only if getattr(args, n) is not None]
    if given:
        raise MaskgenError(f"{', '.join(given)}: continuous-token options; a joint model draws VQ codes and labels")
    if args.uncond != "null":
        raise MaskgenError("--uncond sets the null class; a joint model has no classes (its condition is the other modality, dropped by masking it)")
    objective = pick(JointObjectiveConfig, args, independent_times=bool(args.independent_times), **({} if args.modality_given is None else {"modality_given": args.modality_given}))
    train_joint(args.data, args.tokenizer, args.out, pick(GeneratorConfig, args), objective, pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    print(f"joint image+segmentation generator saved to {args.out}")


def is_joint_model(folder: str | Path | None) -> bool:
    from .checkpoint import load_json

    path = Path(folder) / "generator.json" if folder else None
    return bool(path and path.is_file() and load_json(path).get("kind") == "joint_generator")
