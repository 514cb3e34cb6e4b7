"""000 Table 2 and Fig. 4 at small scale: every guidance on one base generator, the same seeds.

Rows: MaskGIT without guidance, with classifier-free guidance, blur guidance, SAG, and
self-guidance with the TOAST module fine-tuned with L_mask and with L_aux, each over a
sweep of Gumbel (choice) temperatures at T steps. Prints a markdown table (FD, score,
class accuracy, precision, recall, NFE, seconds per image) and, with ``--out``, writes
``table.md``, ``results.json`` and ``fd_vs_score.png`` (FD against score, one line per
method, points labelled by temperature).

    maskgen ref-stats --data fashion-mnist --network classifier:runs/clf --out runs/clf-train.npz
    python benchmarks/guidance.py --model runs/maskgit --ref runs/clf-train.npz \\
        --sg-aux runs/maskgit/self-guidance --sg-mask runs/maskgit/self-guidance-lmask --out runs/bench-guidance

Scales are fixed before the run (never tuned on these seeds): ``--cfg-scale``,
``--blur-scale``, ``--sag-scale``, ``--sg-scale``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comparison import Bench, add_common_args, markdown, plot_fd_vs_score


def methods(args: argparse.Namespace) -> dict[str, dict]:
    table = {
        "maskgit": {},
        "cfg": {"cfg": args.cfg_scale},
        "blur": {"guidance": "blur", "scale": args.blur_scale},
        "sag": {"guidance": "sag", "scale": args.sag_scale},
        "sg-lmask": {"guidance": "self", "scale": args.sg_scale, "sg_module": args.sg_mask},
        "sg-laux": {"guidance": "self", "scale": args.sg_scale, "sg_module": args.sg_aux},
    }
    chosen = {}
    for name in args.methods.split(","):
        if name not in table:
            sys.exit(f"unknown method {name!r}; choose from {', '.join(table)}")
        module = table[name].get("sg_module")
        if "sg_module" in table[name] and not (module and (Path(module) / "self-guidance.safetensors").is_file()):
            print(f"skipping {name}: no self-guidance module at {module}", file=sys.stderr)
            continue
        chosen[name] = table[name]
    return chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--methods", default="maskgit,cfg,blur,sag,sg-lmask,sg-laux")
    p.add_argument("--temperatures", default="1,4.5,10,25", help="Gumbel choice temperatures to sweep")
    p.add_argument("--annealing", default="compound", help="Gumbel annealing (000's code: compound)")
    p.add_argument("--steps", type=int, default=18, help="sampling steps T (000: 18)")
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--blur-scale", type=float, default=1.0)
    p.add_argument("--sag-scale", type=float, default=1.0)
    p.add_argument("--sg-scale", type=float, default=1.0)
    p.add_argument("--sg-aux", default=None, help="module fine-tuned with L_aux (default MODEL/self-guidance)")
    p.add_argument("--sg-mask", default=None, help="module fine-tuned with L_mask")
    args = p.parse_args()
    args.sg_aux = args.sg_aux or str(Path(args.model) / "self-guidance")

    bench = Bench(args)
    temps = [float(t) for t in args.temperatures.split(",")]
    for name, kwargs in methods(args).items():
        for temp in temps:
            bench.run(name, {"temperature": temp}, fill="confidence", steps=args.steps, choice_temperature=temp, annealing=args.annealing, **kwargs)
    table = markdown(bench.rows, ["method", "temperature"])
    print(f"{bench.header()}; confidence fill, T={args.steps}, {args.annealing} Gumbel annealing\n")
    print(table)
    bench.save(table)
    if args.out:
        plot_fd_vs_score(bench.rows, Path(args.out) / "fd_vs_score.png", "method", "temperature", f"T={args.steps}, {args.num} samples")


if __name__ == "__main__":
    main()
