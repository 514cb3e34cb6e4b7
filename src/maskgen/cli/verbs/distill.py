"""``maskgen distill``: distil a generator into a one-step student (Di[M]O, Zhu et al. 2025).

The library is ``maskgen.training.distill_run.distill``; this verb parses the options, builds
the objective's and the trainer's configs once and reports what was saved. The student goes
to ``MODEL/one-step/`` unless ``--out`` says otherwise, where ``maskgen sample --sampler
one-step`` finds it.
"""

from __future__ import annotations

import argparse

from ..options import add_train_options, output_folder, pick

NAME = "distill"
HELP = "Distil a generator into a one-step student (Di[M]O): a frozen teacher, an auxiliary model, token-level distribution matching."
REQUIRED = ("model",)
OUT = "folder"
DEFAULT_OUT = "one-step"
FROZEN = "teacher_sha256"

# Di[M]O's optimisation (the authors' configs/DIMO_MaskGit.yaml, as the paper's ImageNet run):
# Adam with betas (0.9, 0.999), no weight decay, lr 1e-5 for both networks, constant after 100
# warm-up steps (min_lr = lr), gradient clipping at 1, EMA 0.9999 of the student; the step
# count is maskgen's CPU-sized default (the paper trains 50k steps).
TRAIN_DEFAULTS = dict(steps=2000, batch_size=64, lr=1e-5, min_lr=1e-5, warmup=100, weight_decay=0.0, ema=0.9999, betas=(0.9, 0.999))


def PRESETS():
    """(folder, names, what) of the distillation presets ``--preset`` names."""
    from ...training.distill import PRESETS as folder, distill_presets

    return folder, distill_presets(), "distillation"


def objective_config():
    from ...training.distill import DistillConfig

    return DistillConfig


def add_options(p: argparse.ArgumentParser) -> None:
    from ...training.distill import DIVERGENCES, INIT_MIXES, distill_presets

    p.add_argument("--model", default=None, help="model folder of the teacher (a discrete-token generator + tokenizer)")
    p.add_argument("--out", default=None, help="student folder (default: MODEL/one-step)")
    p.add_argument("--preset", default=None, help=f"the authors' code's objective: {', '.join(distill_presets())} (options given here or in --config win)")
    g = p.add_argument_group("objective (defaults: maskgen.training.distill.DistillConfig)")
    g.add_argument("--r-init", type=float, default=None, help="share of [MASK] in the student's initial tokens, the rest random codes (default 0.6)")
    g.add_argument("--init-mix", default=None, help=f"{' or '.join(INIT_MIXES)}: exactly round(N r_init) [MASK] (default), or each independently")
    g.add_argument("--embed-noise", type=float, default=None, help="Gaussian perturbation s of the student's input embeddings (default 0; authors' code 0.1)")
    g.add_argument("--divergence", default=None, help=f"token-level divergence: {', '.join(DIVERGENCES)} (default fkl)")
    g.add_argument("--beta", type=float, default=None, help="jeffrey: (1 - beta) FKL + beta RKL (default 0.5)")
    g.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale s of the teacher (default 0; the paper's w 2 is s 1)")
    g.add_argument("--schedule", default=None, help="masking schedule of the student's tokens into x_t (default arccos)")
    g.add_argument("--aux-label-smoothing", type=float, default=None, help="label smoothing of the auxiliary model's cross-entropy (default 0)")
    g.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=None, help="keep the embeddings and a tied output bias fixed (authors' code)")
    g.add_argument("--cond-drop", type=float, default=None, help="share of rows distilled with the null class, for unconditional one-step samples (default 0)")
    add_train_options(p)


def run(args: argparse.Namespace) -> None:
    from ...training import distill
    from ...training.trainer import TrainConfig

    out = output_folder(args, DEFAULT_OUT)
    config, train = pick(objective_config(), args), pick(TrainConfig, args)  # bad values fail here, before the teacher loads
    student, record = distill(args.model, out, config, train, resume=args.resume, until=args.stop_at)
    default = output_folder(argparse.Namespace(out=None, model=args.model), DEFAULT_OUT)
    print(
        f"one-step student saved to {out}: {record['parameters']['student']:,} parameters, distilled from {args.model} "
        f"(generator sha256 {record['teacher_sha256'][:12]}...); sample it with "
        f"`maskgen sample --model {args.model} --sampler one-step{'' if out == default else f' --student {out}'} --out DIR`"
    )
