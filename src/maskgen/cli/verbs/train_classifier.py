"""``maskgen train-classifier``: the small dataset classifier behind FD-clf, classifier score and
class accuracy (``maskgen.training.classification``)."""

from __future__ import annotations

import argparse

from ..options import add_train_options, pick

NAME = "train-classifier"
HELP = "Train the small dataset classifier behind FD-clf, classifier score and class accuracy."
REQUIRED = ("out",)
OUT = "folder"
TRAIN_DEFAULTS = dict(steps=1500, batch_size=128, lr=2e-3, min_lr=1e-5, warmup=50, weight_decay=0.05, ema=0.0)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="embedded", help="image data spec")
    p.add_argument("--out", required=False, help="output folder")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=None, help="base channel width")
    p.add_argument("--feature-dim", type=int, default=None, help="size of the feature layer FD-clf reads")
    add_train_options(p)


def run(args: argparse.Namespace) -> None:
    from ...data import open_images
    from ...models.classifier import ClassifierConfig
    from ...training import train_classifier
    from ...training.trainer import TrainConfig

    channels = open_images(args.data, "train-classifier", image_size=args.image_size).channels
    _, metrics = train_classifier(args.data, args.out, pick(ClassifierConfig, args, channels=channels), pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    if metrics:
        print(f"classifier saved to {args.out}: held-out accuracy {metrics['accuracy']:.2%} ({metrics['heldout']})")
