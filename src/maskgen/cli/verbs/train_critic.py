"""``maskgen train-critic``: a Token-Critic trained against a frozen generator (Lezama et al.
2022, Alg. 1); its AUC on fresh generator fills of held-out items is reported."""

from __future__ import annotations

import argparse

from ...validate import integer
from ..options import add_train_options, output_folder, pick

NAME = "train-critic"
HELP = "Train a Token-Critic against a frozen generator (Token-Critic, Lezama et al. 2022, Alg. 1)."
REQUIRED = ("model",)
OUT = "folder"
DEFAULT_OUT = "critic"  # the folder under --model where the critic rule finds it
FROZEN = "generator_sha256"
# Token-Critic: Adam betas (0.9, 0.96), like the generator
TRAIN_DEFAULTS = dict(steps=3000, batch_size=64, lr=1e-3, min_lr=1e-5, warmup=100, weight_decay=0.05, ema=0.999, betas=(0.9, 0.96))


def objective_config():
    from ...training.critic import CriticObjectiveConfig

    return CriticObjectiveConfig


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=False, help="model folder (generator + tokenizer)")
    p.add_argument("--out", default=None, help="critic folder (default: MODEL/critic)")
    p.add_argument("--data", default=None, help="token or image data (default: what the generator was trained on)")
    p.add_argument("--width", type=int, default=None, help="critic width (default: the generator's)")
    p.add_argument("--depth", type=int, default=None, help="critic depth (default: the generator's)")
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--heldout", type=int, default=1000, help="items kept out of training for the final AUC")
    g = p.add_argument_group("objective")
    g.add_argument("--schedule", default="cosine", help="masking schedule of the real grids")
    g.add_argument("--draw-temperature", type=float, default=1.0, help="temperature of the generator's fills")
    g.add_argument("--cond-drop", type=float, default=0.1)
    add_train_options(p)


def check(args: argparse.Namespace) -> None:
    integer("--heldout", args.heldout, 1)


def run(args: argparse.Namespace) -> None:
    from ...training import train_critic
    from ...training.trainer import TrainConfig

    out = output_folder(args, DEFAULT_OUT)
    _, metrics = train_critic(args.model, out, pick(objective_config(), args), pick(TrainConfig, args), data=args.data,
                              width=args.width, depth=args.depth, heads=args.heads, heldout=args.heldout, resume=args.resume, until=args.stop_at)
    if metrics:
        print(f"critic saved to {out}: AUC {metrics['auc']:.4f} on fresh generator fills of {metrics['heldout']} held-out items")
