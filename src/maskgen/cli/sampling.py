"""What the verbs that sample share (``sample``, ``refine``, ``eval``, ``inpaint``): the sampler
options, the ``SamplerSpec`` and run settings they describe (or a replayed samples.json
records), the model folder a replay names, class ids and classifier rejection."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..checkpoint import file_sha256, load_json
from ..errors import MaskgenError
from ..validate import integer, integers, number

# The most images one sample or eval run draws: 20 FID-50k sets. Every image, its tokens and
# its labels are held in memory until the run writes them, so a larger --num (1e12) would end
# in an allocator error, or hours later in a full disk; refused before anything is allocated.
MAX_SAMPLES = 1_000_000


def check_acceptance(args: argparse.Namespace) -> None:
    """``--acceptance`` is a share of candidates kept, in (0, 1]; checked before anything else
    so a negative rate is not reported as a missing classifier."""
    number("--acceptance rate", args.acceptance, 0.0, 1.0, lo_open=True)


def given_options(args: argparse.Namespace) -> dict:
    """The flat sampler options given on the command line or in a recipe (None: left out)."""
    from ..sampling.spec import flat_options

    given = {k: getattr(args, k) for k in flat_options() if getattr(args, k, None) is not None}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}  # a pair (nargs=2) as the spec holds it


def sampler_spec(args: argparse.Namespace, build=None):
    """The ``SamplerSpec`` the options describe: from ``--spec`` (a spec file or a samples.json),
    or from the given flat options through ``build`` (default ``SamplerSpec.from_options``,
    whose defaults apply to what is left out)."""
    from ..sampling.spec import SamplerSpec

    given = given_options(args)
    if args.spec is not None:
        if given:
            raise MaskgenError(f"--spec describes the whole sampler; drop --{next(iter(given)).replace('_', '-')} or edit the spec")
        return SamplerSpec.from_file(args.spec)
    return (build or SamplerSpec.from_options)(**given)


def replayed_run(args: argparse.Namespace) -> dict:
    """The ``run`` settings a replayed ``--spec`` (a samples.json) records ({} without one)."""
    if args.spec is None:
        return {}
    from ..sampling.spec import read_spec_file

    recorded = read_spec_file(args.spec).get("run", {})
    if not isinstance(recorded, dict):
        raise MaskgenError(f"spec file {args.spec}: run must be a mapping, got {recorded!r}")
    return recorded


def run_settings(args: argparse.Namespace, num_default: int) -> dict:
    """Seed, batch size, number and classes of a sampling run: what the command line gives,
    else what a replayed samples.json recorded, else the defaults; each checked by type, a
    recorded one named by the file it came from. A recorded model is checked against the
    sha256 recorded with it (``replayed_model``)."""
    recorded = replayed_run(args)
    out = {}
    for key, default, low in (("seed", 0, None), ("batch_size", 64, 1), ("num", num_default, 1), ("classes", None, None)):
        value = getattr(args, key, None)
        given = value is not None
        value = value if given else recorded.get(key, default)
        name = f"--{key.replace('_', '-')}" if given or key not in recorded else f"run.{key} in {args.spec}"
        if key == "classes":
            if value is not None and not isinstance(value, (str, int)):
                raise MaskgenError(f"{name} must be comma-separated class ids, got {value!r}")
            out[key] = None if value is None else str(value)
            continue
        out[key] = integer(name, value, low)
    if out["num"] > MAX_SAMPLES:
        raise MaskgenError(f"--num {out['num']:,} is more than one run draws (at most {MAX_SAMPLES:,}: every image is held in memory until it is written); split it into runs with other --seed values")
    if getattr(args, "model", None) is None and recorded.get("model"):
        args.model = replayed_model(recorded, args.spec)
    if getattr(args, "rejection_classifier", None) is None and recorded.get("rejection_classifier"):
        args.rejection_classifier, args.acceptance = recorded["rejection_classifier"], recorded.get("acceptance")
        if not isinstance(args.rejection_classifier, str):
            raise MaskgenError(f"run.rejection_classifier in {args.spec} must be a string, got {args.rejection_classifier!r}")
    return out


def replayed_model(run: dict, spec: str | Path) -> str:
    """The model folder a replayed samples.json names, checked against the sha256 recorded with
    it (``model_sha256``: the generator's weights), so a replay from any working directory
    samples the model the file was drawn with, or refuses in one line. A samples.json written
    before model identities were recorded names the folder as it was typed (maybe relative to
    where ``sample`` ran) without a hash: it is resolved as before, from the current folder."""
    model, expected = run["model"], run.get("model_sha256")
    if not isinstance(model, str):
        raise MaskgenError(f"run.model in {spec} must be a model folder, got {model!r}")
    if expected is not None:
        config, weights = Path(model) / "generator.json", Path(model) / "generator.safetensors"
        found = load_json(config).get("sha256") if config.is_file() else None  # the loader checks the weights against it
        if found is None and weights.is_file():
            found = file_sha256(weights)  # a record written before it held the hash
        if found != expected:
            now = f"holds generator sha256 {found[:12]}..." if isinstance(found, str) else "holds no generator"
            raise MaskgenError(f"{spec} was sampled from the generator with sha256 {str(expected)[:12]}... in {model}, which now {now}; pass --model to sample another")
    return model


def sampled_model(args: argparse.Namespace) -> str:
    """The model folder a sampling verb loads: ``--model``, else the one a replayed ``--spec``
    records (checked by its sha256, ``replayed_model``; ``args.model`` is set to it), else the
    shipped one."""
    from ..shipped import reference_dir

    if args.model is None:
        run = replayed_run(args)
        if isinstance(run.get("model"), str):
            args.model = replayed_model(run, args.spec)
    return args.model or str(reference_dir())


def refined_model(model: str | None, samples: Path) -> str:
    """The model ``refine`` re-samples with: ``--model``, else the one the samples' own
    ``samples.json`` records (checked by its sha256, as a replay is), else the shipped one,
    as every other verb defaults to it."""
    from ..shipped import reference_dir

    if model is not None:
        return model
    side = samples.with_suffix(".json")
    record = load_json(side) if side.is_file() else {}
    if isinstance(record.get("model"), str):
        return replayed_model(record, side)
    return str(reference_dir())


def build_rejection(args: argparse.Namespace, device):
    check_acceptance(args)  # a replayed samples.json may have set it
    if args.acceptance >= 1.0 and args.rejection_classifier is None:
        return None
    if args.rejection_classifier is None:
        raise MaskgenError("--acceptance below 1 needs --rejection-classifier classifier:DIR or torchscript:FILE")
    from ..sampling.rejection import ClassifierRejection, load_rejection_classifier

    return ClassifierRejection.from_acceptance(load_rejection_classifier(args.rejection_classifier, device), args.acceptance)


def parse_classes(text: str | None, num: int, num_classes: int) -> torch.Tensor:
    if text is None:
        return torch.arange(num) % num_classes
    ids = integers("--classes", text)
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad:
        raise MaskgenError(f"--classes: class id {bad[0]} out of range: the model has classes 0..{num_classes - 1}")
    return torch.tensor(ids)[torch.arange(num) % len(ids)]


def nfe_text(result) -> str:
    """A result's NFE in words, with the networks it is made of."""
    s = result.settings
    head = f"; diffusion head passes {s['nfe_head']:g} per image" if s.get("nfe_head") else ""
    if s.get("nfe_student"):
        return f"NFE {result.nfe:g} = one-step student {s['nfe_student']:g} + generator {s['nfe_generator']:g}"
    if s.get("nfe_critic"):
        return f"NFE {result.nfe:g} = generator {s['nfe_generator']:g} + critic {s['nfe_critic']:g}{head}"
    return f"NFE {result.nfe:g}{head}"


def warn_small_sample(metrics: dict) -> None:
    """The results' ``note`` (too few samples for FD/KID to mean much), as one stderr line."""
    import sys

    if metrics.get("note"):
        print(f"maskgen: warning: {metrics['note']}", file=sys.stderr)


def add_given_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--given", default=None, help="joint model: MODALITY:DATA, the modality kept fixed (image or segmentation) and a folder of its PNGs or a data spec (mosaic-test:N, images:DIR,labels:DIR)")


def parse_given(text: str) -> tuple[str, str]:
    """``--given MODALITY:DATA`` -> (modality, data)."""
    modality, sep, data = text.partition(":")
    if not sep or not data:
        raise MaskgenError(f"--given takes MODALITY:DATA (image:DIR or segmentation:DIR), got {text!r}")
    return modality, data


# the head sampler's options (its HeadSampling fields, "head_" before each): type and help
HEAD_OPTIONS = {
    "sampler": (str, "continuous tokens: dpm-solver (DPM-Solver++, eMIGM's default) or ddpm (MAR)"),
    "steps": (int, "continuous tokens: head sampler steps (default 8 for dpm-solver, 100 for ddpm)"),
    "temperature": (float, "continuous tokens: DDPM noise temperature tau (default 1)"),
    "chain": (str, "continuous tokens, ddpm: clipped (from step 995, default) or full (from 999, MAR's code)"),
}


def add_sampler_options(p: argparse.ArgumentParser) -> None:
    """The sampler options: each fills one field of a ``SamplerSpec`` (whose defaults apply
    to what is left out); an option the chosen fill rule or guidance does not have is refused.
    The fill rules', the guidances' and the token draw's options are their spec fields' own
    (``maskgen.sampling.registry.option``), so a registered piece brings its options with it."""
    from ..sampling.draw import TokenDraw
    from ..sampling.head_sampler import HeadSampling
    from ..sampling.registry import FILLS, GUIDANCES, field_names, options_of
    from ..sampling.spec import preset_names

    def listed(registry) -> str:
        return ", ".join(f"{kind} ({cls.about})" if cls.about else kind for kind, cls in registry.items())

    g = p.add_argument_group("sampler (defaults: maskgen.sampling.spec.SamplerSpec)")
    g.add_argument("--spec", default=None, help="a sampler spec (JSON/YAML) or a samples.json to replay; excludes the options below")
    g.add_argument("--preset", default=None, help="an authors' codebase's sampler: " + ", ".join(preset_names()) + " (docs/presets.md); the options below override it")
    g.add_argument("--sampler", default=None, help="fill rule: " + listed(FILLS))
    g.add_argument("--steps", type=int, default=None, help="T (default 8; refine: 9; one-step: 1, more steps refine with the generator)")
    g.add_argument("--schedule", default=None, help="mask schedule (default cosine)")
    for flag, f in options_of(TokenDraw).items():
        add_field_option(g, flag, f, "")
    for flag, owners in FILLS.owners().items():
        add_field_option(g, flag, options_of(FILLS[owners[0]])[flag], f"{_and(owners)} rule{'s' if len(owners) > 1 else ''}")
    for name in field_names(HeadSampling):
        kind, help = HEAD_OPTIONS[name]
        g.add_argument(f"--head-{name}", type=kind, default=None, help=help)
    for gcls in GUIDANCES.values():
        if gcls.shorthand:
            s = gcls.shorthand
            g.add_argument(f"--{s}", type=float, default=None, help=f"{gcls.once} scale s: weak + (1 + s)(strong - weak) (default: none; -1 is the unconditional sample)")
            g.add_argument(f"--{s}-ramp", default=None, help="constant, linear (by time), or revealed (by revealed fraction, MAR)")
            g.add_argument(f"--{s}-interval", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="guide only when LO < s <= HI")
    g.add_argument("--guidance", default=None, help="a (further) guidance: " + listed(GUIDANCES))
    g.add_argument("--scale", type=float, default=None, help="scale s of --guidance (default 1)")
    g.add_argument("--ramp", default=None, help="scale schedule of --guidance: constant or linear")
    g.add_argument("--interval", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="apply --guidance only when LO < s <= HI")
    for flag, owners in GUIDANCES.owners().items():
        add_field_option(g, flag, options_of(GUIDANCES[owners[0]])[flag], f"{_and(owners)} guidance")
    g.add_argument("--acceptance", type=float, default=1.0, help="classifier rejection: keep 1 of round(1/RATE) candidates")
    g.add_argument("--rejection-classifier", default=None, help="classifier:DIR or torchscript:FILE (class logits)")
    g.add_argument("--seed", type=int, default=None, help="sampling seed (default 0)")
    g.add_argument("--batch-size", type=int, default=None, help="images per sampler call (default 64; part of what the seed reproduces)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda ...")


def add_field_option(g, flag: str, f, owners: str) -> None:
    """``--flag`` for the spec field ``f`` (its ``option`` metadata: help and argparse settings;
    a switch for a boolean field, else the type of its default), left out by default."""
    meta = {k: v for k, v in f.metadata.items() if k not in ("flag", "help")}
    default = f.default if isinstance(f.default, (bool, int, float, str, tuple)) else None
    if "action" not in meta:
        if isinstance(default, bool):
            meta["action"] = argparse.BooleanOptionalAction
        else:
            meta.setdefault("type", type(default) if default is not None else str)
    help = f.metadata["help"]
    g.add_argument("--" + flag.replace("_", "-"), default=None, help=f"{owners}: {help}" if owners else help, **meta)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
