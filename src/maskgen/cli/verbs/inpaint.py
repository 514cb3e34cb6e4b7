"""``maskgen inpaint``: complete the white region of a mask in a user's image.

Inpainting, outpainting (a mask covering the border) and class-conditional editing (the
same with another ``--classes``, alias ``--class``) of MaskGIT (Chang et al. 2022, Sec. 4.3) and Discrete
Interpolants (Hu & Ommer 2025, Sec. 3.6, Eq. 8: the given tokens follow the null
scheduler). The sampling is ``maskgen.pipelines.inpainting.inpaint``'s; this verb reads the two
pictures, brings them to the model's size, and writes what came out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..sampling import add_sampler_options

NAME = "inpaint"
HELP = "Inpaint, outpaint or edit an image: re-sample the white region of --mask with any sampler (no --classes: unconditional)."
REQUIRED: tuple[str, ...] = ("image", "mask", "out")
OUT = "folder"


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder (default: the shipped reference model)")
    p.add_argument("--image", default=None, help="the image to complete (any size; resized to the model's)")
    p.add_argument("--mask", default=None, help="the region to sample, white on black (any size; resized with nearest to the image)")
    p.add_argument("--out", default=None, help="output folder: grid.png (input | mask | samples), sample-*.png, inpaint.json")
    p.add_argument(
        "--classes", "--class", dest="classes", default=None, metavar="C[,C...]",
        help="class id(s) of the completions, round robin over --num as in sample (--class: the same option); "
        "without it the region is sampled unconditionally (the null class), never guessed by a classifier",
    )
    p.add_argument("--num", type=int, default=8, help="samples of the same input, each with its own noise")
    add_sampler_options(p)


def load_region(mask_path: str, image_path: str, size: int):
    """The mask as bool [size, size] (True: white, to sample), aligned with the image as
    ``data.images.load_image`` brings it to the model: resized (nearest) to the image's own
    size first, then the same centre square, then nearest to ``size``."""
    import numpy as np
    import torch
    from PIL import Image

    from ...errors import MaskgenError

    try:
        with Image.open(image_path) as img:
            w, h = img.size
        with Image.open(mask_path) as m:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            m = m.convert("L").resize((w, h), Image.NEAREST)
            m = m.resize((size, size), Image.NEAREST, box=(left, top, left + side, top + side))
            arr = np.asarray(m, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MaskgenError(f"cannot decode mask {mask_path}: {e}") from None
    return torch.from_numpy(arr > 127)


def run(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image

    from ...checkpoint import atomic_write, save_json
    from ...data.images import load_image
    from ...devices import resolve_device
    from ...errors import MaskgenError
    from ...images import make_grid
    from ...pipelines import MaskGen, masked_per_step_record
    from ...pipelines.inpainting import inpaint
    from ...shipped import reference_dir
    from ...validate import integer
    from ..sampling import MAX_SAMPLES, nfe_text, parse_classes, sampler_spec

    integer("--num", args.num, 1)
    if args.num > MAX_SAMPLES:
        raise MaskgenError(f"--num {args.num:,} is more than one run draws (at most {MAX_SAMPLES:,}: every completion is held in memory until it is written)")
    for option, path in (("--image", args.image), ("--mask", args.mask)):
        if not Path(path).is_file():
            raise MaskgenError(f"{option} {path} is a folder, not an image file" if Path(path).is_dir() else f"{option} file does not exist: {path}")
    if args.acceptance != 1.0 or args.rejection_classifier is not None:
        raise MaskgenError("inpaint does not do classifier rejection: drop --acceptance/--rejection-classifier")
    device = resolve_device(args.device)
    model_dir = args.model or str(reference_dir())
    spec = sampler_spec(args)  # a bad option fails before the model loads
    mg = MaskGen.load(model_dir, device=device)
    size, channels = mg.tokenizer.config.image_size, mg.tokenizer.config.channels
    image = load_image(args.image, size, channels)
    region = load_region(args.mask, args.image, size)
    if not region.any():
        raise MaskgenError(f"the mask {args.mask} has no white pixels: paint the region to sample in white")
    num_classes = mg.generator.config.num_classes
    unconditional = args.classes is None
    try:  # num_classes: the null class
        labels = torch.full((args.num,), num_classes, dtype=torch.long) if unconditional else parse_classes(args.classes, args.num, num_classes)
    except MaskgenError as e:
        raise MaskgenError(f"{e} (leave --classes out for unconditional)") from None
    seed = 0 if args.seed is None else args.seed
    batch_size = 64 if args.batch_size is None else args.batch_size
    integer("--batch-size", batch_size, 1)

    images = image.expand(args.num, -1, -1, -1).contiguous()
    out_images, result = inpaint(mg, images, region, labels, mg.sampler(spec), seed=seed, batch_size=batch_size, progress=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save_png(name: str, arr) -> Path:
        path = out / name
        atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))
        return path

    shown_mask = (region.to(torch.uint8) * 255).expand(channels, -1, -1)
    row = torch.cat([image[None], shown_mask[None], out_images.cpu()])
    grid = save_png("grid.png", make_grid(row, nrow=len(row), scale=3))
    for i, img in enumerate(out_images.cpu()):
        arr = img.permute(1, 2, 0).numpy()
        save_png(f"sample-{i:02d}.png", arr[..., 0] if channels == 1 else arr)
    save_json(out / "inpaint.json", {
        "model": model_dir, "image": str(args.image), "mask": str(args.mask), "num": args.num,
        "classes": None if unconditional else labels.tolist(), "unconditional": unconditional,
        "class": None if unconditional or len(set(labels.tolist())) > 1 else int(labels[0]),
        "seed": seed, "batch_size": batch_size, "preset": args.preset, "sampler": spec.to_dict(), "nfe": result.nfe,
        "masked_per_step": masked_per_step_record(result),
        "region_pixels": int(region.sum()), "region_tokens": result.settings["region_tokens"][0], "settings": result.settings,
    })
    shown = sorted(set(labels.tolist()))
    what = "unconditional" if unconditional else f"class{'es' if len(shown) > 1 else ''} {','.join(map(str, shown))}"
    print(f"{args.num} completions ({what}, {result.settings['region_tokens'][0]} tokens re-sampled, {nfe_text(result)}) -> {grid}, {out / 'inpaint.json'}")
