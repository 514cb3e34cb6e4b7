"""``maskgen train``: a class-conditional generator with the unified masked objective (eMIGM,
You et al. 2025, Eq. 7): over discrete tokens with a VQ tokenizer, over continuous latents with
a KL tokenizer (eMIGM's MAE + diffusion head), or with ``--modalities image,segmentation`` a joint
image+segmentation model (Discrete Interpolants, Hu & Ommer 2025, Sec. 3.4).

``--preset NAME``: the ``train`` options of one authors' codebase's training objective, shipped as
``training/presets/<NAME>.yaml`` (each file names the repository, file, functions and commit it
reproduces; docs/presets.md lists every difference). The name is kept in the objective's config
(``MaskedObjectiveConfig.preset``), so the saved model records it and ``--resume`` refuses a run
with another preset.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ...devices import is_main_process
from ...errors import MaskgenError
from ..options import add_train_options, pick

NAME = "train"
HELP = "Train a class-conditional generator with the unified masked objective (eMIGM Eq. 7)."
REQUIRED = ("tokenizer", "out")
OUT = "folder"
TRAIN_DEFAULTS = dict(steps=3000, batch_size=64, lr=1e-3, min_lr=1e-5, warmup=100, weight_decay=0.05, ema=0.999)

CONTINUOUS_ONLY = ("arch", "decoder_depth", "buffer_size", "head_width", "head_depth", "head_draws")
MODALITIES = ("image", "segmentation")
# generator options the model config records that the trainer's own record does not hold
LAYOUT_RESUME = ("norm_eps", "uncond", "attn_dropout", "proj_dropout", "mlp_dropout")


def PRESETS():
    """(folder, names, what) of the training presets ``--preset`` names."""
    from ...training.masking import training_presets

    return Path(__file__).resolve().parents[2] / "training" / "presets", training_presets(), "training"


def objective_config():
    from ...training.masking import MaskedObjectiveConfig

    return MaskedObjectiveConfig


def add_options(p: argparse.ArgumentParser) -> None:
    from ...training.masking import training_presets

    p.add_argument("--data", default="embedded", help="image data spec, or tokens:CACHE from `maskgen encode`")
    p.add_argument("--tokenizer", required=False, help="tokenizer folder")
    p.add_argument("--out", required=False, help="output model folder")
    g = p.add_argument_group("model")
    g.add_argument("--width", type=int, default=256)
    g.add_argument("--depth", type=int, default=6)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--mlp-ratio", type=float, default=4.0)
    g.add_argument("--uncond", default="null", help="null (learned no-class row) or mask (eMIGM's CFG with mask)")
    g.add_argument("--timestep-input", action="store_true", help="explicit timestep model (Discrete Interpolants' ETM)")
    g.add_argument("--norm-eps", type=float, default=None, help="LayerNorm eps of the transformer (default 1e-5; MAR and eMIGM train with 1e-6)")
    g = p.add_argument_group("continuous tokens (a KL tokenizer: eMIGM's MAE + diffusion head)")
    g.add_argument("--arch", default=None, help="mae (encoder on the visible tokens, eMIGM's default) or single (one transformer)")
    g.add_argument("--decoder-depth", type=int, default=None, help="MAE decoder blocks (default: --depth)")
    g.add_argument("--buffer-size", type=int, default=None, help="class slots before the tokens (MAR: 64; default 1)")
    g.add_argument("--head-width", type=int, default=None, help="diffusion head MLP width (default 256)")
    g.add_argument("--head-depth", type=int, default=None, help="diffusion head residual blocks (default 3)")
    g.add_argument("--head-draws", type=int, default=None, help="noise draws per token per step (MAR's diffusion_batch_mul; default 4)")
    g = p.add_argument_group("objective")
    g.add_argument("--schedule", default="cosine", help="linear, cosine, arccos, root, quadratic, cubic(a,b), exp, log-exp")
    g.add_argument("--masking", default="count", help="count (ceil(N gamma)), bernoulli, or batch-bernoulli (one pattern's count per batch: eMIGM's code)")
    g.add_argument("--weighting", default="one", help="one (sum over masked tokens / N, eMIGM Eq. 7), elbo (gamma'/gamma times that), per-image (mean over each image's masked tokens), batch-masked-mean (sum over the batch's masked tokens / their number: MAR's, eMIGM's code), all-tokens (mean over every position: valeoai v1)")
    g.add_argument("--t-min", type=float, default=0.0, help="time truncation (eMIGM: 0.2)")
    g.add_argument("--t-sampling", default="uniform", help="uniform: t ~ U[t_min, t_max] (eMIGM's paper); clamp: max(U, t_min) (eMIGM's code); truncnorm: N(1, 0.25^2) on [t_min, 1] (MAR's code)")
    g.add_argument("--cond-drop", type=float, default=0.1, help="probability of the unconditional input")
    g.add_argument("--label-smoothing", type=float, default=0.0)
    g.add_argument("--batch-time", action="store_true", help="one t per batch (eMIGM) instead of one per image")
    g.add_argument("--preset", default=None, help=f"the training objective of an authors' codebase: {', '.join(training_presets())} (options given here or in --config win)")
    g.add_argument("--t-max", type=float, default=None, help="uniform t in [t_min, t_max] (default 1; Discrete Interpolants' code: 0.999)")
    g.add_argument("--attn-dropout", type=float, default=None, help="dropout on the attention probabilities in training (default 0; MAR, eMIGM, valeoai v1: 0.1)")
    g.add_argument("--proj-dropout", type=float, default=None, help="dropout after the attention's output projection in training (default 0)")
    g.add_argument("--mlp-dropout", type=float, default=None, help="dropout after the MLP's GELU and after its output in training (default 0)")
    j = p.add_argument_group("joint image+segmentation model (Discrete Interpolants Sec. 3.4; --data mosaic[:N] or images:DIR,labels:DIR)")
    j.add_argument("--modalities", default=None, help="image (default) or image,segmentation: a joint model over both token sequences")
    j.add_argument("--independent-times", action="store_true", default=None, help="joint: a time per modality (Discrete Interpolants' appendix) instead of one shared t (their Eq. 5)")
    j.add_argument("--modality-given", type=float, default=None, help="joint: probability that one modality is kept whole (the conditional case; default 0.1). --cond-drop is each modality's dropout to fully masked")
    g.add_argument("--coupling", type=float, default=0.0, help="conditional coupling (Discrete Interpolants Eq. 8): per image up to this ratio of tokens is kept clean and unscored")
    add_train_options(p)


def resume_changes(args: argparse.Namespace, out: str, record: dict) -> list[str]:
    """The ``LAYOUT_RESUME`` options given now that differ from the model config of the run's
    newest checkpoint (an option left out takes its default, as a fresh run would), and another
    tokenizer than the run's."""
    from ...checkpoint import file_sha256, load_json
    from ...models.kinds import generator_class
    from ...training.checkpoints import StepCheckpoints, plain

    changed = []
    latest = StepCheckpoints(out).latest()
    config_file = latest / "generator.json" if latest is not None else None
    if config_file is not None and config_file.is_file():
        saved = load_json(config_file)
        before = saved.get("config", {})
        defaults = {f.name: f.default for f in dataclasses.fields(generator_class(saved).config_class)}  # what a fresh run would take
        for key in LAYOUT_RESUME:
            now = getattr(args, key, None)
            now = defaults.get(key) if now is None else now
            if key in before and now is not None and plain(before[key]) != plain(now):
                changed.append(f"{key} {before[key]} -> {now}")
    tokenizer, mine = getattr(args, "tokenizer", None), Path(out) / "tokenizer.safetensors"
    if tokenizer and mine.is_file() and (Path(tokenizer) / "tokenizer.safetensors").is_file():
        if file_sha256(Path(tokenizer) / "tokenizer.safetensors") != file_sha256(mine):
            changed.append(f"--tokenizer {tokenizer} is not the tokenizer of this run ({mine})")
    return changed


def parse_modalities(text: str | None) -> tuple[str, ...]:
    names = tuple(m.strip() for m in (text or "image").split(",") if m.strip())
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise MaskgenError(f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}")
    if names not in (("image",), MODALITIES):
        raise MaskgenError(f"--modalities must be image or image,segmentation, got {text!r}")
    return names


def run(args: argparse.Namespace) -> None:
    from ...training.trainer import TrainConfig

    joint = parse_modalities(args.modalities) == MODALITIES
    only = [n for n in ("independent_times", "modality_given") if getattr(args, n) is not None]
    if only and not joint:
        raise MaskgenError(f"--{only[0].replace('_', '-')} applies to a joint model: add --modalities image,segmentation")
    if joint:
        return train_joint(args)
    from ...models.continuous import ContinuousConfig
    from ...models.transformer import GeneratorConfig
    from ...tokenizers import is_continuous
    from ...training import train_generator
    from ...training.masking import MaskedObjectiveConfig

    continuous = is_continuous(args.tokenizer)
    only = [f"--{n.replace('_', '-')}" for n in CONTINUOUS_ONLY if getattr(args, n) is not None]
    if only and not continuous:
        raise MaskgenError(f"{', '.join(only)}: continuous-token options; {args.tokenizer} is a VQ tokenizer (discrete codes)")
    gen = pick(ContinuousConfig if continuous else GeneratorConfig, args)
    train_generator(args.data, args.tokenizer, args.out, gen, pick(MaskedObjectiveConfig, args), pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    if is_main_process():  # under torchrun every rank returns here; say it once
        print(f"generator saved to {args.out}")


def train_joint(args: argparse.Namespace) -> None:
    from ...models.transformer import GeneratorConfig
    from ...training.joint import JointObjectiveConfig, train_joint
    from ...training.trainer import TrainConfig

    given = [f"--{n.replace('_', '-')}" for n in CONTINUOUS_ONLY if getattr(args, n) is not None]
    if given:
        raise MaskgenError(f"{', '.join(given)}: continuous-token options; a joint model draws VQ codes and labels")
    if args.uncond != "null":
        raise MaskgenError("--uncond sets the null class; a joint model has no classes (its condition is the other modality, dropped by masking it)")
    objective = pick(JointObjectiveConfig, args, independent_times=bool(args.independent_times), **({} if args.modality_given is None else {"modality_given": args.modality_given}))
    train_joint(args.data, args.tokenizer, args.out, pick(GeneratorConfig, args), objective, pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
    print(f"joint image+segmentation generator saved to {args.out}")
