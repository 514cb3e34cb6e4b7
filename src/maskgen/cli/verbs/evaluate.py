"""``maskgen eval``: FID/FD-clf, precision, recall, KID and IS/classifier score of samples (a
samples .npz, or ``--num`` images a model samples first) against reference statistics.

A joint image+segmentation model is scored against the other half of ``--given``'s paired data
(Discrete Interpolants, Hu & Ommer 2025, Sec. 3.5): image->segmentation by mIoU and pixel
accuracy, segmentation->image by FD-clf (``fid`` with an Inception ``--network``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...errors import MaskgenError
from ...validate import integer
from ..sampling import add_given_option, add_sampler_options

NAME = "eval"
HELP = "FID/FD-clf, precision, recall, KID and IS/classifier score of samples against reference statistics."
REQUIRED: tuple[str, ...] = ()
OUT = "file"
IS_MODES = ("evaluator", "torch-fidelity")


def output_file(args: argparse.Namespace) -> Path:
    """Where ``eval`` writes its results: ``--out``, else ``eval.json`` next to ``--samples``,
    else in the current folder. Never next to the model: that may be the installed package's
    reference folder, which is no place for a user's results."""
    if args.out:
        return Path(args.out)
    if args.samples:
        return Path(args.samples).with_name("eval.json")
    return Path("eval.json")


def add_options(p: argparse.ArgumentParser) -> None:
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
    add_given_option(p)


def run(args: argparse.Namespace) -> None:
    from ...checkpoint import save_json
    from ...devices import resolve_device
    from ...metrics import load_stats
    from ...metrics.evaluate import evaluate_images, load_reference_network, load_samples
    from ...pipelines import JointGen, load_model, masked_per_step_record
    from ...shipped import reference_dir
    from ..sampling import build_rejection, check_acceptance, parse_classes, run_settings, sampled_model, sampler_spec, warn_small_sample
    from .sample import refuse_given

    device = resolve_device(args.device)
    if args.samples is not None and args.given is not None:
        raise MaskgenError("a joint model is evaluated against the other half of --given's paired data: drop --samples and --ref")
    if args.samples is not None and args.model is not None:
        raise MaskgenError("eval takes either --samples FILE.npz or --model DIR, not both")
    check_acceptance(args)
    integer("--kid-subsets", args.kid_subsets, 1)
    if args.is_mode not in IS_MODES:
        raise MaskgenError(f"unknown --is-mode {args.is_mode!r}; choose from {', '.join(IS_MODES)}")
    model = None
    if args.samples is None:
        named = args.model is not None
        args.model = sampled_model(args)
        model = load_model(args.model, device=device)
        if isinstance(model, JointGen):
            return evaluate_pairs(args, model, named)
        refuse_given(args, model, named)
    out = output_file(args)  # checked writable by the CLI before any work
    loaded = load_samples(args.samples) if args.samples else None  # a bad file fails before anything loads
    if args.ref is None:
        args.ref = str(reference_dir() / "classifier" / "ref-stats.npz")
    ref = load_stats(args.ref)
    net = load_reference_network(args.ref, ref, args.network, device)
    if loaded is not None:
        images, labels, record = loaded
        settings = record.get("settings", {})
        sampler, nfe = record.get("sampler", settings.get("sampler", settings)), record.get("nfe", settings.get("nfe"))
        record = {k: record[k] for k in ("preset", "masked_per_step") if k in record}
    else:
        run = run_settings(args, 1000)
        sampler_obj = model.sampler(sampler_spec(args))
        labels_t = parse_classes(run["classes"], run["num"], model.generator.config.num_classes)
        imgs, result = model.generate(labels_t, sampler_obj, seed=run["seed"], batch_size=run["batch_size"], rejection=build_rejection(args, device))
        images, labels, sampler, nfe = imgs.numpy(), labels_t.numpy(), result.settings["sampler"], result.nfe
        record = {"preset": args.preset, "masked_per_step": masked_per_step_record(result)}
    metrics = evaluate_images(images, labels, ref, net, device=device, kid_subsets=args.kid_subsets, is_mode=args.is_mode)
    save_json(out, {"metrics": metrics, "sampler": sampler, "nfe": nfe, **record, "samples": args.samples or args.model, "ref": args.ref})
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if not k.endswith("sha256") and k != "note"}
    print(json.dumps(shown, indent=1))
    print(f"results written to {out.resolve()}")
    warn_small_sample(metrics)


def evaluate_pairs(args: argparse.Namespace, model, named: bool) -> None:
    """image->segmentation: mIoU and pixel accuracy against the held-out maps;
    segmentation->image: FD-clf (``fd_clf``; ``fid`` with an Inception ``--network``) between
    the sampled and the held-out images. Written to ``--out``, else ``./eval.json``, refused
    when it exists without ``--overwrite``, as every ``eval``."""
    from ...checkpoint import save_json
    from ...metrics.evaluate import image_fd, sample_size_note
    from ..sampling import warn_small_sample
    from .sample import given_inputs, joint_run

    if args.samples is not None or args.ref is not None:
        raise MaskgenError("a joint model is evaluated against the other half of --given's paired data: drop --samples and --ref")
    if args.given is None:
        raise MaskgenError("eval of a joint model needs --given image:DATA (mIoU) or segmentation:DATA (FD-clf), DATA paired (mosaic-test:N, images:DIR,labels:DIR)")
    out = output_file(args)
    spec, run, given = joint_run(args, model, named)
    modality, tensor, truth = given
    if truth is None:
        raise MaskgenError(f"--given {args.given}: eval needs paired data (mosaic-test:N or images:DIR,labels:DIR) to compare with")
    images, maps, result = model.generate(len(tensor), model.sampler(spec), seed=run["seed"], batch_size=run["batch_size"], **given_inputs(given))
    if modality == "image":
        from ...metrics.segmentation import segmentation_scores

        metrics = {"task": "image->segmentation", **segmentation_scores(maps, truth, model.seg_tokenizer.config.num_labels)}
    else:
        metrics = {"task": "segmentation->image", **image_fd(images, truth, args.network, model.device)}
    metrics["count"] = len(tensor)
    note = sample_size_note(metrics)
    if note:
        metrics["note"] = note
    identity = {"model": str(Path(model.folder).resolve()), "model_sha256": model.generator.sha256}
    save_json(out, {"metrics": metrics, "sampler": spec.to_dict(), "nfe": result.nfe, **identity, "given": args.given, "seed": run["seed"]})
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if k not in ("iou", "note") and not k.endswith("sha256")}, indent=1))
    print(f"results written to {out.resolve()}")
    warn_small_sample(metrics)
