"""``maskgen <verb>``: train-tokenizer, encode, train, import, finetune-sg, train-critic, sample,
refine, train-classifier, ref-stats, eval, export, and the verbs of ``commands/`` (demo, ...).

Every option of a verb can also come from a YAML recipe (``--config FILE``); options given
on the command line win over the recipe. Bad input ends in one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from .convert.formats import add_import_options
from .cli_checks import DEFAULT_SUBFOLDER, FILE_OUT, FOLDER_OUT, OneLineParser, output_folder, preflight, recipe_value, show_defaults
from .folder_lock import folder_lock
from .sampling_commands import add_sampler_options
from .tokenizer_commands import add_encode_options, add_train_tokenizer_options
from .commands import verb_modules
from . import joint_commands, train_presets
from .memory import keep_freed_memory
from .errors import MaskgenError
from .progress import interval as progress_interval

TRAIN_DEFAULTS = {
    "train-tokenizer": dict(steps=1500, batch_size=64, lr=2e-3, min_lr=1e-4, warmup=50, weight_decay=0.0, ema=0.0),
    "train": dict(steps=3000, batch_size=64, lr=1e-3, min_lr=1e-5, warmup=100, weight_decay=0.05, ema=0.999),
    # 000's fine-tuning recipe: lr 1e-4, betas (0.9, 0.96), no weight decay, EMA
    # 004: Adam betas (0.9, 0.96), like the generator
    "train-critic": dict(steps=3000, batch_size=64, lr=1e-3, min_lr=1e-5, warmup=100, weight_decay=0.05, ema=0.999, betas=(0.9, 0.96)),
    "finetune-sg": dict(steps=2000, batch_size=64, lr=1e-4, min_lr=1e-6, warmup=100, weight_decay=0.0, ema=0.999, betas=(0.9, 0.96)),
    "train-classifier": dict(steps=1500, batch_size=128, lr=2e-3, min_lr=1e-5, warmup=50, weight_decay=0.05, ema=0.0),
}

CONTINUOUS_ONLY = ("arch", "decoder_depth", "buffer_size", "head_width", "head_depth", "head_draws")

# Required, but may come from a recipe, so argparse cannot enforce them itself.
REQUIRED = {
    "train-tokenizer": ("out",),
    "encode": ("tokenizer", "out"),
    "train": ("tokenizer", "out"),
    "finetune-sg": ("model",),
    "train-critic": ("model",),
    "refine": ("samples", "out"),
    "export": ("model", "out"),
    "sample": ("out",),
    "import": ("format", "generator", "tokenizer", "out"),
    "train-classifier": ("out",),
    "ref-stats": ("out",),
    "eval": (),
}


def _train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, help="optimizer steps")
    g.add_argument("--batch-size", type=int, help="global batch size (split over torchrun processes)")
    g.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    g.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay")
    g.add_argument("--warmup", type=int, help="linear warmup steps")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95))
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    g.add_argument("--ema", type=float, help="EMA decay of the saved weights (0: off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (atomic)")
    g.add_argument("--log-every", type=int, default=25)
    g.add_argument("--num-workers", type=int, default=0, help="data loader workers for lazy image folders")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--no-bf16", dest="bf16", action="store_false", help="disable bf16 autocast on CUDA")
    g.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step (the global batch stays --batch-size)")
    g.add_argument("--compile", action="store_true", help="wrap the model in torch.compile (CUDA: faster steps after a slow first one)")
    g.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT/checkpoints (another model, data or setting is refused)")
    g.add_argument("--overwrite", action="store_true", help="start afresh in an OUT that already holds a training run")
    g.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) at this step; continue later with --resume")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = OneLineParser(prog="maskgen", description="Masked generative image models (MaskGIT family).")
    subs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs: dict[str, argparse.ArgumentParser] = {}

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        p = subs.add_parser(name, help=help, description=help)
        p.add_argument("--config", help="YAML recipe whose keys are this verb's options")
        verbs[name] = p
        return p

    p = verb("train-tokenizer", "Train a convolutional tokenizer: VQ (discrete codes) or KL (continuous latents); report PSNR.")
    add_train_tokenizer_options(p)
    _train_options(p)

    add_encode_options(verb("encode", "Pre-extract token ids (VQ) or latents (KL) and labels into a memory-mapped cache (resumable)."))

    p = verb("train", "Train a class-conditional generator with the unified masked objective (002 Eq. 7).")
    p.add_argument("--data", default="embedded", help="image data spec, or tokens:CACHE from `maskgen encode`")
    p.add_argument("--tokenizer", required=False, help="tokenizer folder")
    p.add_argument("--out", required=False, help="output model folder")
    g = p.add_argument_group("model")
    g.add_argument("--width", type=int, default=256)
    g.add_argument("--depth", type=int, default=6)
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--mlp-ratio", type=float, default=4.0)
    g.add_argument("--uncond", default="null", help="null (learned no-class row) or mask (002's CFG with mask)")
    g.add_argument("--timestep-input", action="store_true", help="explicit timestep model (003 ETM)")
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
    g.add_argument("--batch-time", action="store_true", help="one t per batch (002) instead of one per image")
    train_presets.add_train_options(g)
    joint_commands.add_train_options(p)
    g.add_argument("--coupling", type=float, default=0.0, help="conditional coupling (003 Eq. 8): per image up to this ratio of tokens is kept clean and unscored")
    _train_options(p)

    add_import_options(verb("import", "Convert a published generator checkpoint and its tokenizer into a maskgen model folder."))

    p = verb("finetune-sg", "Fine-tune a TOAST self-guidance module on a frozen generator (000); only the module trains.")
    p.add_argument("--model", required=False, help="model folder (generator + tokenizer)")
    p.add_argument("--out", default=None, help="module folder (default: MODEL/self-guidance)")
    p.add_argument("--data", default=None, help="token or image data (default: what the generator was trained on)")
    g = p.add_argument_group("objective")
    g.add_argument("--task", default="aux", help="aux: error-token correction (000 Eq. 7); mask: plain masked loss (000 Table 2 ablation)")
    g.add_argument("--error-rate", type=float, default=0.3, help="share of visible tokens replaced by generator draws")
    g.add_argument("--label-smoothing", type=float, default=0.1)
    g.add_argument("--reg-weight", type=float, default=0.1, help="weight of the top-down reconstruction regulariser")
    g.add_argument("--schedule", default="cosine", help="masking schedule of the fine-tuning inputs")
    g.add_argument("--cond-drop", type=float, default=0.1, help="probability of the unconditional anchor")
    _train_options(p)

    p = verb("train-critic", "Train a Token-Critic against a frozen generator (004 Algorithm 1).")
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
    _train_options(p)

    p = verb("refine", "Re-sample the tokens a Token-Critic scores lowest in finished samples (004 Sec. 4.3).")
    add_sampler_options(p)
    p.add_argument("--samples", required=False, help="samples .npz from maskgen sample (with tokens)")
    p.add_argument("--model", default=None, help="the model folder the samples came from (default: the one their samples.json records, else the shipped reference model)")
    p.add_argument("--fraction", type=float, default=None, help="share of tokens re-sampled at the first step (default 0.6)")
    p.add_argument("--out", required=False, help="output folder")

    p = verb("sample", "Sample images with the shared sampling loop.")
    add_sampler_options(p)
    p.add_argument("--model", default=None, help="model folder (default: the shipped reference models)")
    p.add_argument("--num", type=int, default=None, help="number of images (default 100, at most 1,000,000)")
    p.add_argument("--out", required=False, help="output folder")
    p.add_argument("--classes", default=None, help="comma-separated class ids (default: all classes, round robin)")
    joint_commands.add_given_option(p)

    p = verb("train-classifier", "Train the small dataset classifier behind FD-clf, classifier score and class accuracy.")
    p.add_argument("--data", default="embedded", help="image data spec")
    p.add_argument("--out", required=False, help="output folder")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=None, help="base channel width")
    p.add_argument("--feature-dim", type=int, default=None, help="size of the feature layer FD-clf reads")
    _train_options(p)

    p = verb("ref-stats", "Compute reference feature statistics of a dataset once (for eval).")
    p.add_argument("--data", default="embedded", help="image data spec")
    p.add_argument("--split", default="train", help="train or test (IDX data)")
    p.add_argument("--num", type=int, default=None, help="use the first N images (default: all)")
    p.add_argument("--network", default="inception", help="inception, inception:FILE or classifier:DIR")
    p.add_argument("--out", required=False, help="statistics file (.npz is added when missing)")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--device", default="auto")

    p = verb("eval", "FID/FD-clf, precision, recall, KID and IS/classifier score of samples against reference statistics.")
    add_sampler_options(p)
    p.add_argument("--samples", default=None, help="samples .npz (from maskgen sample)")
    p.add_argument("--model", default=None, help="or: a model folder to sample --num images from first (default: the shipped models)")
    p.add_argument("--num", type=int, default=None, help="images to sample with --model (default 1000, at most 1,000,000)")
    p.add_argument("--classes", default=None)
    p.add_argument("--ref", required=False, help="reference statistics .npz (from maskgen ref-stats; default: the shipped classifier's)")
    p.add_argument("--network", default=None, help="feature network (default: the one --ref was made with)")
    p.add_argument("--out", default=None, help="results JSON (default: eval.json next to --samples, else in the current folder)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--is-mode", default="evaluator", help="evaluator (chunks of 5000) or torch-fidelity (10 splits)")
    joint_commands.add_given_option(p)

    p = verb("export", "Copy a model folder, its self-guidance modules, critic and a classifier into one compact folder.")
    p.add_argument("--model", required=False, help="model folder (generator + tokenizer, optional self-guidance*/ and critic/)")
    p.add_argument("--out", required=False, help="new folder")
    p.add_argument("--dtype", default="bf16", help="bf16, fp16 or fp32")
    p.add_argument("--classifier", default=None, help="dataset classifier folder to include")
    p.add_argument("--ref-data", default=None, help="with --classifier: data to compute its reference statistics on")


    for name, module in verb_modules().items():
        module.add_options(verb(name, module.HELP))
    for name, p in verbs.items():  # every verb that writes can be told to write over what its output holds
        if (name in FOLDER_OUT | FILE_OUT | set(DEFAULT_SUBFOLDER)) and "--overwrite" not in p._option_string_actions:
            p.add_argument("--overwrite", action="store_true", help="write over what --out already holds (refused otherwise)")
    for name, p in verbs.items():
        p.set_defaults(**TRAIN_DEFAULTS.get(name, {}))
        show_defaults(p)  # --help shows every default the parser knows
    return parser, verbs


def load_recipe(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MaskgenError(f"recipe file does not exist: {p}")
    try:
        recipe = yaml.safe_load(p.read_bytes().decode("utf-8")) or {}
    except yaml.YAMLError as e:
        raise MaskgenError(f"malformed YAML recipe {p}: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise MaskgenError(f"recipe {p} is not a text file (YAML)") from None
    if not isinstance(recipe, dict):
        raise MaskgenError(f"recipe {p} must be a mapping of option: value")
    actions = {a.dest: a for a in parser._actions}
    out = {}
    for key, value in recipe.items():
        dest = str(key).replace("-", "_")
        if dest not in actions or dest in ("help", "config"):
            raise MaskgenError(f"unknown option {key!r} in recipe {p}")
        out[dest] = recipe_value(actions[dest], str(key), value, parser.get_default(dest), f"recipe {p}")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser, verbs = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    sub = verbs[args.verb]  # its TRAIN_DEFAULTS are set (build_parser)
    recipe = load_recipe(args.config, sub) if args.config else {}
    sub.set_defaults(**{**train_presets.preset_options(args, recipe, sub), **recipe})
    args = parser.parse_args(argv)
    module = verb_modules().get(args.verb)
    for name in REQUIRED.get(args.verb, ()) if module is None else module.REQUIRED:
        if getattr(args, name) is None:
            raise MaskgenError(f"{args.verb}: --{name} is required (on the command line or in the recipe)")
    return args


def pick(cls, args: argparse.Namespace, **overrides):
    """Build dataclass ``cls`` from the matching fields of ``args``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return cls(**{**values, **overrides})


def run(args: argparse.Namespace) -> None:
    preflight(args)
    # encode takes its output's lock itself (encode_dataset), around the scratch folder it fills
    locked = (FOLDER_OUT | set(DEFAULT_SUBFOLDER)) - {"encode"}
    writes = output_folder(args) if args.verb in locked else None
    with folder_lock(writes):
        _run_verb(args)


def _run_verb(args: argparse.Namespace) -> None:
    from . import sampling_commands, tokenizer_commands, workflows
    from .training.trainer import TrainConfig

    if args.verb == "train-tokenizer":
        tokenizer_commands.train_tokenizer(args)
    elif args.verb == "encode":
        tokenizer_commands.encode(args)
    elif args.verb == "train" and joint_commands.is_joint_training(args):
        joint_commands.train(args, pick, CONTINUOUS_ONLY)
    elif args.verb == "train":
        from .models.continuous import ContinuousConfig
        from .models.transformer import GeneratorConfig
        from .tokenizers import is_continuous
        from .training.masking import MaskedObjectiveConfig

        continuous = is_continuous(args.tokenizer)
        only = [f"--{n.replace('_', '-')}" for n in CONTINUOUS_ONLY if getattr(args, n) is not None]
        if only and not continuous:
            raise MaskgenError(f"{', '.join(only)}: continuous-token options; {args.tokenizer} is a VQ tokenizer (discrete codes)")
        gen = pick(ContinuousConfig if continuous else GeneratorConfig, args)
        workflows.train_generator(
            args.data, args.tokenizer, args.out, gen, pick(MaskedObjectiveConfig, args), pick(TrainConfig, args),
            resume=args.resume, until=args.stop_at,
        )
        if _rank0():  # under torchrun every rank returns here; say it once
            print(f"generator saved to {args.out}")
    elif args.verb == "finetune-sg":
        from .training.self_guidance import SelfGuidanceObjectiveConfig

        out = output_folder(args)
        _, counts = workflows.finetune_self_guidance(
            args.model, out, pick(SelfGuidanceObjectiveConfig, args), pick(TrainConfig, args), data=args.data,
            resume=args.resume, until=args.stop_at,
        )
        if _rank0():
            print(
                f"self-guidance module saved to {out}: {counts['module']:,} trainable parameters, "
                f"{counts['trainable_fraction']:.2%} of generator + module ({counts['generator']:,} frozen)"
            )
    elif args.verb == "train-critic":
        from .training.critic import CriticObjectiveConfig

        out = output_folder(args)
        _, metrics = workflows.train_critic(
            args.model, out, pick(CriticObjectiveConfig, args), pick(TrainConfig, args), data=args.data,
            width=args.width, depth=args.depth, heads=args.heads, heldout=args.heldout, resume=args.resume, until=args.stop_at,
        )
        if metrics:
            print(f"critic saved to {out}: AUC {metrics['auc']:.4f} on fresh generator fills of {metrics['heldout']} held-out items")
    elif args.verb == "import":
        from .convert.formats import import_published

        out = import_published(args.format, args.generator, args.tokenizer, args.out, args.image_size, args.heads, args.use_ema)
        print(f"imported {args.format} checkpoints into {out}: maskgen sample --model {out} ...")
    elif args.verb == "sample":
        sampling_commands.sample(args)
    elif args.verb == "refine":
        sampling_commands.refine(args)
    elif args.verb == "train-classifier":
        from .classify import train_classifier
        from .models.classifier import ClassifierConfig

        data = args.data
        clf_cfg = pick(ClassifierConfig, args, channels=_data_channels(data, args.image_size))
        _, metrics = train_classifier(data, args.out, clf_cfg, pick(TrainConfig, args), resume=args.resume, until=args.stop_at)
        if metrics:
            print(f"classifier saved to {args.out}: held-out accuracy {metrics['accuracy']:.2%} ({metrics['heldout']})")
    elif args.verb == "ref-stats":
        from .evaluate import reference_stats
        from .metrics.stats import stats_path
        from .devices import resolve_device

        stats = reference_stats(args.data, args.network, args.out, args.split, args.num, args.batch_size, resolve_device(args.device))
        print(f"reference statistics of {stats.count} images ({stats.network}) written to {stats_path(args.out)}")
    elif args.verb == "eval":
        sampling_commands.evaluate(args)
    elif args.verb == "export":
        from .export import export_models

        written = export_models(args.model, args.out, args.dtype, args.classifier, args.ref_data)
        print(f"exported {', '.join(written)} ({args.dtype}) to {args.out}")
    elif args.verb in verb_modules():
        verb_modules()[args.verb].run(args)


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _data_channels(data: str, image_size: int) -> int:
    from .data import open_images

    return open_images(data, "train-classifier", image_size=image_size).channels


def main(argv: Sequence[str] | None = None) -> int:
    keep_freed_memory()  # every verb allocates the same large activations step after step
    try:
        progress_interval()  # a bad MASKGEN_PROGRESS_INTERVAL is refused before any work, not at the first bar
        run(parse_args(argv))
    except MaskgenError as e:
        _fresh_line()
        print(f"maskgen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _fresh_line()
        print("maskgen: interrupted", file=sys.stderr)
        return 130
    return 0


def _fresh_line() -> None:
    """End a progress bar the error interrupted, so the message starts its own line."""
    from tqdm import tqdm

    if sys.stderr.isatty() and any(not getattr(bar, "disable", True) for bar in list(getattr(tqdm, "_instances", ()))):
        sys.stderr.write("\n")


if __name__ == "__main__":
    sys.exit(main())
