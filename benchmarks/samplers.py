"""000 Table 2 / Fig. 4 and 004 Table 1 / Sec. 4.3 at small scale: every sampler on one base
generator, with the same labels and seeds.

Methods (``--methods``):

- ``maskgit``, ``cfg``, ``blur``, ``sag``, ``sg-lmask``, ``sg-laux``: the confidence fill at
  T steps over a sweep of Gumbel (choice) temperatures, without guidance, with
  classifier-free guidance, blur guidance, SAG, and self-guidance with the TOAST module
  fine-tuned with L_mask and with L_aux (000);
- ``maskgit-2t``: the confidence fill at 2T steps, MaskGIT at the NFE of Token-Critic (004 Fig. 3);
- ``critic``: Token-Critic sampling at T steps over a sweep of selection noise K and of the
  token temperature (a t + b with a = 0, i.e. constant b; 004 Sec. 3.2);
- ``refine``: the ``maskgit`` samples of each temperature refined by the critic (60% of the
  tokens at the first step, then cosine over 9 steps; 004 Sec. 4.3); its NFE and time
  include the base samples'.

Prints a markdown table (FD, score, class accuracy, precision, recall, NFE, seconds per
image) and with ``--out`` writes ``table.md``, ``results.json`` and ``fd_vs_score.png`` (FD
against score, one line per method).

    maskgen ref-stats --data fashion-mnist --network classifier:runs/ref/clf --out runs/ref/clf-train.npz
    python benchmarks/samplers.py --model runs/ref/maskgit --ref runs/ref/clf-train.npz --out runs/bench-samplers

Scales and sweeps are fixed before a run (never tuned on these seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from comparison import Bench, add_common_args, markdown, plot_fd_vs_score

GUIDED = {
    "maskgit": lambda a: {},
    "cfg": lambda a: {"cfg": a.cfg_scale},
    "blur": lambda a: {"guidance": "blur", "scale": a.blur_scale},
    "sag": lambda a: {"guidance": "sag", "scale": a.sag_scale},
    "sg-lmask": lambda a: {"guidance": "self", "scale": a.sg_scale, "sg_module": a.sg_mask},
    "sg-laux": lambda a: {"guidance": "self", "scale": a.sg_scale, "sg_module": a.sg_aux},
}
METHODS = (*GUIDED, "maskgit-2t", "critic", "refine")


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def available(args: argparse.Namespace, name: str) -> bool:
    need = {"sg-lmask": (args.sg_mask, "self-guidance.safetensors"), "sg-laux": (args.sg_aux, "self-guidance.safetensors"),
            "critic": (args.critic, "critic.safetensors"), "refine": (args.critic, "critic.safetensors")}
    if name not in need:
        return True
    folder, file = need[name]
    if folder and (Path(folder) / file).is_file():
        return True
    print(f"skipping {name}: no {file} in {folder}", file=sys.stderr)
    return False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--temperatures", default="1,4.5,10,25", help="Gumbel choice temperatures of the confidence rows")
    p.add_argument("--annealing", default="compound", help="Gumbel annealing (000's code: compound)")
    p.add_argument("--steps", type=int, default=18, help="sampling steps T (000 and 004: 18)")
    p.add_argument("--cfg-scale", type=float, default=2.0)
    p.add_argument("--blur-scale", type=float, default=1.0)
    p.add_argument("--sag-scale", type=float, default=1.0)
    p.add_argument("--sg-scale", type=float, default=1.0)
    p.add_argument("--sg-aux", default=None, help="module fine-tuned with L_aux (default MODEL/self-guidance)")
    p.add_argument("--sg-mask", default=None, help="module fine-tuned with L_mask (default MODEL/self-guidance-lmask)")
    p.add_argument("--critic", default=None, help="Token-Critic folder (default MODEL/critic)")
    p.add_argument("--critic-noise", default="0.5,1,2", help="selection noise K values (at token temperature 1)")
    p.add_argument("--critic-temperatures", default="0.7,1,1.3", help="token temperatures b (at K = 1)")
    p.add_argument("--refine-steps", type=int, default=9)
    p.add_argument("--refine-fraction", type=float, default=0.6)
    args = p.parse_args()
    model_dir = Path(args.model)
    args.sg_aux = args.sg_aux or str(model_dir / "self-guidance")
    args.sg_mask = args.sg_mask or str(model_dir / "self-guidance-lmask")
    args.critic = args.critic or str(model_dir / "critic")
    chosen = [m for m in args.methods.split(",") if m]
    for m in chosen:
        if m not in METHODS:
            sys.exit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    chosen = [m for m in chosen if available(args, m)]

    bench = Bench(args)
    temps = floats(args.temperatures)
    base_rows = {}
    confidence = dict(fill="confidence", annealing=args.annealing)
    for name in chosen:
        if name in GUIDED:
            for temp in temps:
                row = bench.run(name, {"setting": f"gumbel {temp:g}"}, steps=args.steps, choice_temperature=temp, **confidence, **GUIDED[name](args))
                if name == "maskgit":
                    base_rows[temp] = row
        elif name == "maskgit-2t":
            for temp in temps:
                bench.run(name, {"setting": f"gumbel {temp:g}"}, steps=2 * args.steps, choice_temperature=temp, **confidence)
        elif name == "critic":
            critic = dict(fill="critic", steps=args.steps, critic=args.critic)
            for k in floats(args.critic_noise):
                bench.run(name, {"setting": f"K {k:g}, temp 1"}, critic_noise=k, critic_temperature=(0.0, 1.0), **critic)
            for b in floats(args.critic_temperatures):
                if b != 1.0:
                    bench.run(name, {"setting": f"K 1, temp {b:g}"}, critic_noise=1.0, critic_temperature=(0.0, b), **critic)
        elif name == "refine":
            if not base_rows:
                print("skipping refine: it refines the maskgit rows, which were not run", file=sys.stderr)
                continue
            refiner = bench.model.refiner(args.refine_steps, args.refine_fraction, critic=args.critic)
            for temp, base in base_rows.items():
                bench.run(name, {"setting": f"maskgit gumbel {temp:g}"}, sampler=refiner, init=base["tokens"], base=base)
    table = markdown(bench.rows, ["method", "setting"])
    print(f"{bench.header()}; T={args.steps}, {args.annealing} Gumbel annealing for the confidence rows\n")
    print(table)
    bench.save(table)
    if args.out:
        plot_fd_vs_score(bench.rows, Path(args.out) / "fd_vs_score.png", "method", "setting", f"T={args.steps}, {args.num} samples")


if __name__ == "__main__":
    main()
