"""``maskgen refine``: re-sample the tokens a Token-Critic scores lowest in finished samples
(Token-Critic, Lezama et al. 2022, Sec. 4.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import MaskgenError
from ...validate import number
from ..sampling import add_sampler_options

NAME = "refine"
HELP = "Re-sample the tokens a Token-Critic scores lowest in finished samples (Token-Critic, Lezama et al. 2022, Sec. 4.3)."
REQUIRED = ("samples", "out")
OUT = "folder"


def add_options(p: argparse.ArgumentParser) -> None:
    add_sampler_options(p)
    p.add_argument("--samples", required=False, help="samples .npz from maskgen sample (with tokens)")
    p.add_argument("--model", default=None, help="the model folder the samples came from (default: the one their samples.json records, else the shipped reference model)")
    p.add_argument("--fraction", type=float, default=None, help="share of tokens re-sampled at the first step (default 0.6)")
    p.add_argument("--out", required=False, help="output folder")


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from ...checkpoint import load_arrays
    from ...devices import resolve_device
    from ...pipelines import MaskGen, save_samples
    from ..sampling import check_acceptance, nfe_text, refined_model, run_settings, sampler_spec

    device = resolve_device(args.device)
    check_acceptance(args)
    if args.fraction is not None:
        number("--fraction", args.fraction, 0.0, 1.0, lo_open=True)
    path = Path(args.samples)
    arrays = load_arrays(path, ("tokens", "labels"), what="samples written by maskgen sample")
    if len(arrays["tokens"]) == 0 or len(arrays["tokens"]) != len(arrays["labels"]):
        raise MaskgenError(f"{path} holds {len(arrays['tokens'])} token grids and {len(arrays['labels'])} labels: nothing to refine")
    try:
        tokens, labels = torch.as_tensor(arrays["tokens"].astype(np.int64)), torch.as_tensor(arrays["labels"].astype(np.int64))
    except (TypeError, ValueError) as e:
        raise MaskgenError(f"tokens/labels in {path} are not integer arrays: {e}") from None
    args.model = refined_model(args.model, path)
    model = MaskGen.load(args.model, device=device)
    if model.continuous:
        raise MaskgenError(f"refine re-samples the tokens a Token-Critic scores lowest; {args.model} holds a continuous-token generator, which has no codes to score: refine the samples of a discrete-token model")
    n = model.generator.config.num_tokens
    if tokens.reshape(len(tokens), -1).shape[1] != n or tokens.min() < 0 or tokens.max() >= model.generator.config.codebook_size:
        raise MaskgenError(f"tokens in {path} do not fit this generator ({n} tokens, {model.generator.config.codebook_size} codes)")
    if args.spec is not None and args.fraction is not None:
        raise MaskgenError("--spec describes the whole sampler; drop --fraction or edit the spec's schedule")

    def refiner(sampler: str = "critic", fraction: float | None = args.fraction, **options):
        # the refinement recipe (steps, fraction, schedule) lives once, in MaskGen.refiner_spec
        if sampler != "critic":
            raise MaskgenError(f"the {sampler} fill rule cannot refine finished tokens; use the critic rule")
        return MaskGen.refiner_spec(**({} if fraction is None else {"fraction": fraction}), **options)

    spec = sampler_spec(args, refiner)
    run = run_settings(args, len(labels))
    images, result = model.generate(labels, model.sampler(spec), seed=run["seed"], batch_size=run["batch_size"], init=tokens)
    changed = (result.tokens != tokens.reshape(len(tokens), -1)).float().mean().item()
    identity = {"model": str(Path(args.model).resolve()), "model_sha256": model.generator.sha256, "refined_from": str(path.resolve())}
    paths = save_samples(args.out, images, result, model.generator.config.num_classes, {**identity, "tokens_changed": changed})
    print(f"{len(images)} samples refined ({nfe_text(result)}, {changed:.1%} of tokens changed) -> {paths['grid']}, {paths['npz']}")
