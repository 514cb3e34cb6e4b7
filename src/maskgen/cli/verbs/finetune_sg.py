"""``maskgen finetune-sg``: a TOAST self-guidance module fine-tuned on a frozen generator
(Hur et al. 2024, Sec. 3.2-3.3); only the module trains."""

from __future__ import annotations

import argparse

from ...devices import is_main_process
from ..options import add_train_options, output_folder, pick

NAME = "finetune-sg"
HELP = "Fine-tune a TOAST self-guidance module on a frozen generator (Hur et al. 2024); only the module trains."
REQUIRED = ("model",)
OUT = "folder"
DEFAULT_OUT = "self-guidance"  # the folder under --model where the samplers find it
FROZEN = "generator_sha256"  # the record entry of the frozen generator's hash, compared on --resume
# the self-guidance paper's fine-tuning recipe: lr 1e-4, betas (0.9, 0.96), no weight decay, EMA
TRAIN_DEFAULTS = dict(steps=2000, batch_size=64, lr=1e-4, min_lr=1e-6, warmup=100, weight_decay=0.0, ema=0.999, betas=(0.9, 0.96))


def objective_config():
    from ...training.self_guidance import SelfGuidanceObjectiveConfig

    return SelfGuidanceObjectiveConfig


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=False, help="model folder (generator + tokenizer)")
    p.add_argument("--out", default=None, help="module folder (default: MODEL/self-guidance)")
    p.add_argument("--data", default=None, help="token or image data (default: what the generator was trained on)")
    g = p.add_argument_group("objective")
    g.add_argument("--task", default="aux", help="aux: error-token correction (Hur et al. 2024, Eq. 7); mask: plain masked loss (their Table 2 ablation)")
    g.add_argument("--error-rate", type=float, default=0.3, help="share of visible tokens replaced by generator draws")
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--reg-weight", type=float, default=0.1, help="weight of the top-down reconstruction regulariser")
    g.add_argument("--schedule", default="cosine", help="masking schedule of the fine-tuning inputs")
    g.add_argument("--cond-drop", type=float, default=0.1, help="probability of the unconditional anchor")
    add_train_options(p)


def run(args: argparse.Namespace) -> None:
    from ...training import finetune_self_guidance
    from ...training.trainer import TrainConfig

    out = output_folder(args, DEFAULT_OUT)
    _, counts = finetune_self_guidance(args.model, out, pick(objective_config(), args), pick(TrainConfig, args), data=args.data,
                                       resume=args.resume, until=args.stop_at)
    if is_main_process():
        print(
            f"self-guidance module saved to {out}: {counts['module']:,} trainable parameters, "
            f"{counts['trainable_fraction']:.2%} of generator + module ({counts['generator']:,} frozen)"
        )
