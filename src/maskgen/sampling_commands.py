"""The bodies of the CLI verbs that sample: ``sample``, ``refine`` and ``eval``; the options
come parsed from ``maskgen.cli``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .errors import MaskgenError


def evaluate(args: argparse.Namespace) -> None:
    import json

    from .evaluate import evaluate_images, load_network, load_samples, reference_network
    from .metrics import load_stats
    from .training.trainer import resolve_device

    from .pipeline import reference_dir

    device = resolve_device(args.device)
    if args.samples is not None and args.model is not None:
        raise MaskgenError("eval takes either --samples FILE.npz or --model DIR, not both")
    if args.samples is None and args.model is None:
        args.model = str(reference_dir())
    if args.ref is None:
        args.ref = str(reference_dir() / "classifier" / "ref-stats.npz")
    ref = load_stats(args.ref)
    net = load_network(args.network or reference_network(args.ref), device)
    if args.samples:
        images, labels, record = load_samples(args.samples)
        out = Path(args.out) if args.out else Path(args.samples).with_name("eval.json")
        sampler = record.get("settings", {})
    else:
        from .pipeline import MaskGen

        model = MaskGen.load(args.model, device=device)
        sampler_obj = build_sampler(model, args)
        labels_t = parse_classes(args.classes, args.num, model.generator.config.num_classes)
        imgs, result = model.generate(labels_t, sampler_obj, seed=args.seed, batch_size=args.batch_size, rejection=build_rejection(args, device))
        images, labels, sampler = imgs.numpy(), labels_t.numpy(), result.settings
        out = Path(args.out) if args.out else Path(args.model) / "eval.json"
    metrics = evaluate_images(images, labels, ref, net, device=device, kid_subsets=args.kid_subsets, is_mode=args.is_mode)
    from .checkpoint import save_json

    save_json(out, {"metrics": metrics, "sampler": sampler, "nfe": sampler.get("nfe"), "samples": args.samples or args.model, "ref": args.ref})
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if not k.endswith("sha256")}
    print(json.dumps(shown, indent=1))
    print(f"results written to {out}")


def build_sampler(model, args: argparse.Namespace, schedule=None):
    return model.sampler(
        args.sampler, args.steps, schedule or args.schedule, args.temperature, args.top_k, args.top_p, args.argmax_last,
        args.choice_temperature, args.annealing, args.cfg, args.cfg_ramp, tuple(args.cfg_interval) if args.cfg_interval else None,
        args.guidance, args.scale, args.ramp, tuple(args.interval) if args.interval else None, args.blur_sigma,
        args.sag_threshold, args.sg_module, args.critic, args.critic_noise, tuple(args.critic_temperature),
    )


def build_rejection(args: argparse.Namespace, device):
    if args.acceptance >= 1.0 and args.rejection_classifier is None:
        return None
    if args.rejection_classifier is None:
        raise MaskgenError("--acceptance below 1 needs --rejection-classifier classifier:DIR or torchscript:FILE")
    from .sampling.rejection import ClassifierRejection, load_rejection_classifier

    return ClassifierRejection.from_acceptance(load_rejection_classifier(args.rejection_classifier, device), args.acceptance)


def parse_classes(text: str | None, num: int, num_classes: int) -> torch.Tensor:
    if text is None:
        return torch.arange(num) % num_classes
    try:
        ids = [int(c) for c in str(text).split(",") if c.strip()]
    except ValueError:
        raise MaskgenError(f"--classes must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise MaskgenError("--classes is empty")
    return torch.tensor(ids)[torch.arange(num) % len(ids)]


def sample(args: argparse.Namespace) -> None:
    from .pipeline import MaskGen, save_samples

    if args.num < 1:
        raise MaskgenError(f"--num must be >= 1, got {args.num}")
    from .training.trainer import resolve_device

    from .pipeline import reference_dir

    device = resolve_device(args.device)
    model = MaskGen.load(args.model or reference_dir(), device=device)
    sampler = build_sampler(model, args)
    labels = parse_classes(args.classes, args.num, model.generator.config.num_classes)
    images, result = model.generate(labels, sampler, seed=args.seed, batch_size=args.batch_size, rejection=build_rejection(args, device))
    paths = save_samples(args.out, images, result, model.generator.config.num_classes, {"model": str(args.model)})
    print(f"{len(images)} samples ({_nfe_text(result)}) -> grid {paths['grid']}, arrays {paths['npz']}, settings {paths['json']}")


def _nfe_text(result) -> str:
    s = result.settings
    if s.get("nfe_critic"):
        return f"NFE {result.nfe:g} = generator {s['nfe_generator']:g} + critic {s['nfe_critic']:g}"
    return f"NFE {result.nfe:g}"


def refine(args: argparse.Namespace) -> None:
    import numpy as np

    from .pipeline import MaskGen, save_samples
    from .schedules import ScaledSchedule
    from .training.trainer import resolve_device

    device = resolve_device(args.device)
    model = MaskGen.load(args.model, device=device)
    path = Path(args.samples)
    if not path.is_file():
        raise MaskgenError(f"samples file does not exist: {path}")
    with np.load(path) as f:
        if "tokens" not in f or "labels" not in f:
            raise MaskgenError(f"{path} has no tokens/labels arrays: refine needs samples written by maskgen sample")
        tokens, labels = torch.as_tensor(f["tokens"].astype(np.int64)), torch.as_tensor(f["labels"].astype(np.int64))
    n = model.generator.config.num_tokens
    if tokens.reshape(len(tokens), -1).shape[1] != n or tokens.max() >= model.generator.config.codebook_size:
        raise MaskgenError(f"tokens in {path} do not fit this generator ({n} tokens, {model.generator.config.codebook_size} codes)")
    sampler = build_sampler(model, args, schedule=ScaledSchedule(args.schedule, args.fraction))
    images, result = model.generate(labels, sampler, seed=args.seed, batch_size=args.batch_size, init=tokens)
    changed = (result.tokens != tokens.reshape(len(tokens), -1)).float().mean().item()
    paths = save_samples(args.out, images, result, model.generator.config.num_classes, {"model": str(args.model), "refined_from": str(path), "tokens_changed": changed})
    print(f"{len(images)} samples refined ({_nfe_text(result)}, {changed:.1%} of tokens changed) -> {paths['grid']}, {paths['npz']}")
