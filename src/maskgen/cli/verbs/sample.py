"""``maskgen sample``: images from a model folder with the shared sampling loop; a joint
image+segmentation model (``JointGen``) samples pairs, with ``--given`` one modality for the
other (Discrete Interpolants, Hu & Ommer 2025, Sec. 3.4-3.5):

    maskgen sample --model J --out S                            # joint: both modalities
    maskgen sample --model J --given segmentation:DIR --out S   # segmentation -> image
    maskgen sample --model J --given image:DIR --cfg 1 --out S  # image -> segmentation

Which it is follows from the model ``load_model`` loads; a replayed samples.json (``--spec``)
names its model, its sampler and its run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import MaskgenError
from ..sampling import add_given_option, add_sampler_options

NAME = "sample"
HELP = "Sample images with the shared sampling loop."
REQUIRED = ("out",)
OUT = "folder"


def add_options(p: argparse.ArgumentParser) -> None:
    add_sampler_options(p)
    p.add_argument("--model", default=None, help="model folder (default: the shipped reference models)")
    p.add_argument("--num", type=int, default=None, help="number of images (default 100, at most 1,000,000)")
    p.add_argument("--out", required=False, help="output folder")
    p.add_argument("--classes", default=None, help="comma-separated class ids (default: all classes, round robin)")
    add_given_option(p)


def run(args: argparse.Namespace) -> None:
    from ...devices import resolve_device
    from ...pipelines import JointGen, load_model
    from ..sampling import sampled_model

    device = resolve_device(args.device)
    named = args.model is not None
    model = load_model(sampled_model(args), device=device)
    if isinstance(model, JointGen):
        return sample_pairs(args, model, named)
    refuse_given(args, model, named)
    sample_images(args, model, device)


def refuse_given(args: argparse.Namespace, model, named: bool) -> None:
    """``--given`` is a joint model's: refused, by name, on any other."""
    from ...pipelines import JointGen

    if args.given is not None:
        if not named:
            raise MaskgenError("--given needs --model, a joint image+segmentation model folder")
        JointGen.check_kind(model.folder, model.record)


def sample_images(args: argparse.Namespace, model, device) -> None:
    from ...pipelines import save_samples
    from ..sampling import build_rejection, check_acceptance, nfe_text, parse_classes, run_settings, sampler_spec

    check_acceptance(args)
    run = run_settings(args, 100)
    spec = sampler_spec(args)
    labels = parse_classes(run["classes"], run["num"], model.generator.config.num_classes)
    images, result = model.generate(labels, model.sampler(spec), seed=run["seed"], batch_size=run["batch_size"], rejection=build_rejection(args, device))
    # the model as an absolute folder and its weights' sha256: a replay from any folder finds it, or refuses another
    identity = {"model": str(Path(model.folder).resolve()), "model_sha256": model.generator.sha256}
    record = {**run, **identity, "acceptance": args.acceptance, "rejection_classifier": args.rejection_classifier}
    paths = save_samples(args.out, images, result, model.generator.config.num_classes, {**identity, "preset": args.preset, "sampler": spec.to_dict(), "run": record})
    print(f"{len(images)} samples ({nfe_text(result)}) -> grid {paths['grid']}, arrays {paths['npz']}, settings {paths['json']}")
    print(f"replay: maskgen sample --spec {paths['json']} --out DIR")


def joint_run(args: argparse.Namespace, model, named: bool):
    """A joint model's sampler spec, run settings and given modality (modality, tensor, the
    other modality or None); what a class-conditional model takes and this one has not is
    refused. A replayed joint samples.json (whose model is sampled: not ``named``) also gives
    its ``--given``."""
    from ..sampling import parse_given, replayed_run, run_settings, sampler_spec

    if getattr(args, "acceptance", 1.0) < 1.0 or getattr(args, "rejection_classifier", None):
        raise MaskgenError("classifier rejection picks by class; a joint model has no classes")
    if getattr(args, "classes", None) is not None:
        raise MaskgenError("--classes: a joint model has no classes; its condition is --given")
    if args.given is None and not named:
        args.given = replayed_run(args).get("given")
    run = run_settings(args, 64)
    given = None
    if args.given is not None:
        modality, data = parse_given(args.given)
        given = (modality, *model.read_given(modality, data, args.num))
    return sampler_spec(args), run, given


def given_inputs(given) -> dict:
    if given is None:
        return {}
    modality, tensor, _ = given
    return {"images": tensor} if modality == "image" else {"maps": tensor}


def sample_pairs(args: argparse.Namespace, model, named: bool) -> None:
    from ...pipelines import save_joint_samples

    spec, run, given = joint_run(args, model, named)
    num = run["num"] if given is None else len(given[1])
    images, maps, result = model.generate(num, model.sampler(spec), seed=run["seed"], batch_size=run["batch_size"], **given_inputs(given))
    identity = {"model": str(Path(model.folder).resolve()), "model_sha256": model.generator.sha256}  # a replay from anywhere, checked
    record = {**identity, "sampler": spec.to_dict(), "run": {**run, "num": num, **identity, "given": args.given}}
    paths = save_joint_samples(args.out, model, images, maps, result, record)
    print(f"{num} image+segmentation pairs (NFE {result.nfe:g}, given: {args.given or 'nothing'}) -> {paths['pairs']}, {paths['npz']}")
    print(f"replay: maskgen sample --spec {paths['json']} --out DIR")
