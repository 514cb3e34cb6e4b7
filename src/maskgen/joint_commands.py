"""The joint image+segmentation model on the command line (Discrete Interpolants, Hu & Ommer
2025, Sec. 3.4-3.5): the options ``train``, ``sample`` and ``eval`` gain, and what they do
with a joint model. ``maskgen.cli`` and ``sampling_commands`` call in here with one line each.

    maskgen train --modalities image,segmentation --data mosaic --tokenizer REF --out J
    maskgen sample --model J --out S                            # joint: both modalities
    maskgen sample --model J --given segmentation:DIR --out S   # segmentation -> image
    maskgen sample --model J --given image:DIR --cfg 1 --out S  # image -> segmentation
    maskgen eval --model J --given image:mosaic-test:500        # mIoU, pixel accuracy
    maskgen eval --model J --given segmentation:mosaic-test:500 # fd_clf of the images
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


def handles(args: argparse.Namespace) -> bool:
    """Whether a ``sample``/``eval`` run is the joint model's: ``--given``, a joint model folder,
    or a replayed joint samples.json (whose model and given modality then apply)."""
    if getattr(args, "spec", None) is not None and getattr(args, "model", None) is None:
        from .sampling.spec import read_spec_file

        run = read_spec_file(args.spec).get("run", {})
        if isinstance(run, dict) and is_joint_model(run.get("model")):
            from .sampling_commands import replayed_model

            args.model = replayed_model(run, args.spec)  # checked against its recorded sha256, as every replay
            args.given = args.given if args.given is not None else run.get("given")
    return args.given is not None or is_joint_model(getattr(args, "model", None))


def read_given(text: str, image_size: int, channels: int, num: int | None):
    """``--given MODALITY:DATA`` -> (modality, its tensor, the other modality's tensor or None).

    DATA is a folder of that modality's PNGs (images, or label maps) or paired data
    (``data/segmentation.py``), whose other modality comes back as the ground truth."""
    from .data.segmentation import is_segmentation_spec, open_segmentation, read_image_folder, read_label_folder

    modality, sep, data = text.partition(":")
    if not sep or not data:
        raise MaskgenError(f"--given takes MODALITY:DATA (image:DIR or segmentation:DIR), got {text!r}")
    if modality not in MODALITIES:
        raise MaskgenError(f"unknown modality {modality!r} in --given; choose from {', '.join(MODALITIES)}")
    if is_segmentation_spec(data):
        pairs = open_segmentation(data, image_size, channels)
        mine, other = (pairs.images, pairs.maps) if modality == "image" else (pairs.maps, pairs.images)
    elif modality == "image":
        mine, other = read_image_folder(data, image_size, channels)[1], None
    else:
        mine, other = read_label_folder(data, image_size)[1], None
    if num is not None:
        if num < 1:
            raise MaskgenError(f"--num must be >= 1, got {num}")
        mine, other = mine[:num], None if other is None else other[:num]
    return modality, mine, other


def _setup(args: argparse.Namespace):
    from .joint_pipeline import JointGen
    from .sampling_commands import run_settings, sampler_spec
    from .devices import resolve_device

    if getattr(args, "acceptance", 1.0) < 1.0 or getattr(args, "rejection_classifier", None):
        raise MaskgenError("classifier rejection picks by class; a joint model has no classes")
    if getattr(args, "classes", None) is not None:
        raise MaskgenError("--classes: a joint model has no classes; its condition is --given")
    if args.model is None:
        raise MaskgenError("--given needs --model, a joint image+segmentation model folder")
    device = resolve_device(args.device)
    model = JointGen.load(args.model, device=device)
    run = run_settings(args, 64)
    given = None
    if args.given is not None:
        c = model.tokenizer.config
        given = read_given(args.given, c.image_size, c.channels, args.num)
    spec = sampler_spec(args)
    return model, spec, run, given


def _inputs(given) -> dict:
    if given is None:
        return {}
    modality, tensor, _ = given
    return {"images": tensor} if modality == "image" else {"maps": tensor}


def sample(args: argparse.Namespace) -> None:
    from .joint_pipeline import save_joint_samples

    model, spec, run, given = _setup(args)
    num = run["num"] if given is None else len(given[1])
    images, maps, result = model.generate(num, model.sampler(spec), seed=run["seed"], batch_size=run["batch_size"], **_inputs(given))
    identity = {"model": str(Path(args.model).resolve()), "model_sha256": model.generator.sha256}  # a replay from anywhere, checked
    record = {**identity, "sampler": spec.to_dict(), "run": {**run, "num": num, **identity, "given": args.given}}
    paths = save_joint_samples(args.out, model, images, maps, result, record)
    print(f"{num} image+segmentation pairs (NFE {result.nfe:g}, given: {args.given or 'nothing'}) -> {paths['pairs']}, {paths['npz']}")
    print(f"replay: maskgen sample --spec {paths['json']} --out DIR")


def evaluate(args: argparse.Namespace) -> None:
    """image->segmentation: mIoU and pixel accuracy against the held-out maps;
    segmentation->image: FD-clf (``fd_clf``; ``fid`` with an Inception ``--network``) between
    the sampled and the held-out images. Written to ``--out``, else ``./eval.json``, refused
    when it exists without ``--overwrite``, as every ``eval``."""
    import json

    from .checkpoint import save_json
    from .sampling_commands import eval_output

    if args.samples is not None or args.ref is not None:
        raise MaskgenError("a joint model is evaluated against the other half of --given's paired data: drop --samples and --ref")
    if args.given is None:
        raise MaskgenError("eval of a joint model needs --given image:DATA (mIoU) or segmentation:DATA (FD-clf), DATA paired (mosaic-test:N, images:DIR,labels:DIR)")
    out = eval_output(args)
    model, spec, run, given = _setup(args)
    modality, tensor, truth = given
    if truth is None:
        raise MaskgenError(f"--given {args.given}: eval needs paired data (mosaic-test:N or images:DIR,labels:DIR) to compare with")
    images, maps, result = model.generate(len(tensor), model.sampler(spec), seed=run["seed"], batch_size=run["batch_size"], **_inputs(given))
    if modality == "image":
        from .metrics.segmentation import segmentation_scores

        metrics = {"task": "image->segmentation", **segmentation_scores(maps, truth, model.seg_tokenizer.config.num_labels)}
    else:
        metrics = {"task": "segmentation->image", **image_fd(images, truth, args.network, model.device)}
    metrics["count"] = len(tensor)
    from .evaluate import sample_size_note

    note = sample_size_note(metrics)
    if note:
        metrics["note"] = note
    identity = {"model": str(Path(args.model).resolve()), "model_sha256": model.generator.sha256}
    save_json(out, {"metrics": metrics, "sampler": spec.to_dict(), "nfe": result.nfe, **identity, "given": args.given, "seed": run["seed"]})
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items() if k not in ("iou", "note") and not k.endswith("sha256")}, indent=1))
    print(f"results written to {out.resolve()}")
    from .sampling_commands import warn_small_sample

    warn_small_sample(metrics)


def image_fd(images, real, network: str | None, device) -> dict:
    """The Frechet distance between sampled and real images, named as ``eval`` names it
    (``evaluate.evaluate_images``): ``fd_clf`` in the features of the shipped Fashion-MNIST
    classifier (or of ``network`` when it is a classifier), ``fid`` in Inception's. The
    classifier saw single 32x32 items, not mosaics: a fixed feature network applied off its
    training data, as Inception is on any non-ImageNet set, so the numbers compare models on
    this set, not across sets."""
    from .evaluate import absolute_network, is_classifier, load_network
    from .metrics.features import extract
    from .metrics.frechet import frechet_distance_features
    from .pipeline import reference_dir

    spec = network or f"classifier:{reference_dir() / 'classifier'}"
    net = load_network(spec, device)
    fake, _ = extract(net, images, device=device, progress=False)
    true, _ = extract(net, real, device=device, progress=False)
    name = "fd_clf" if is_classifier(net) else "fid"
    return {name: frechet_distance_features(fake, true), "network": net.name, "network_spec": absolute_network(spec), "network_sha256": net.sha256}
