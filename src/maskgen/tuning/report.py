"""What ``maskgen tune`` leaves in its folder: a spec file per budget that ``maskgen sample
--spec FILE`` replays, a markdown table, and FD against NFE as a plot (matplotlib, if
installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import save_json
from .search import BudgetResult, describe


def spec_path(out: str | Path, budget: int) -> Path:
    return Path(out) / f"spec-nfe{budget}.json"


def write_specs(results: list[BudgetResult], out: str | Path, model_dir: str, settings: dict[str, Any], model_sha256: str | None = None) -> list[Path]:
    """``spec-nfe<B>.json`` per budget: the winner as ``{"sampler": spec, "run": {"model": ...}}``,
    the layout of a ``samples.json``, so ``maskgen sample --spec`` and ``SamplerSpec.from_file`` read it.
    The model is recorded as an absolute folder with its generator's sha256 (when given), so a
    replay from any folder samples that model or refuses (as ``maskgen sample --spec`` replays)."""
    paths = []
    run = {"model": str(Path(model_dir).resolve()), **({"model_sha256": model_sha256} if model_sha256 else {})}
    for res in results:
        w = res.winner
        record = {"sampler": w["spec"], "run": run, "nfe": w["nfe"],
                  "tune": {"budget": res.budget, "fd": w["fd"], "fd_std": w["fd_std"], "fds": w["fds"], **settings}}
        path = spec_path(out, res.budget)
        save_json(path, record)
        paths.append(path)
    return paths


def table(results: list[BudgetResult], settings: dict[str, Any], shown: int = 5) -> str:
    """The markdown report: per budget the rescored candidates (winner first), then the best search trials."""
    seeds = ",".join(map(str, settings["seeds"]))
    lines = [
        "# maskgen tune",
        "",
        f"Model `{settings['model']}`, FD against `{settings['ref']}`. Search: {settings['trials']} random trials "
        f"and {settings.get('refine', 0)} refinement steps per budget, "
        f"{settings['num']} samples at seed {settings['seed']}; the best {settings['top']} rescored on {settings['rescore_num']} "
        f"samples at seeds {seeds} (mean ± standard deviation over those seeds).",
        "",
        "| NFE budget | sampler | NFE | search FD | rescored FD | s/img | spec file |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for i, c in enumerate(res.rescored):
            std = f" ± {c['fd_std']:.2f}" if c["fd_std"] is not None else ""
            name = f"**{describe(c['spec'])}**" if i == 0 else describe(c["spec"])
            file = spec_path(".", res.budget).name if i == 0 else ""
            lines.append(f"| {res.budget} | {name} | {c['nfe']:g} | {c['search_fd']:.2f} | {c['fd']:.2f}{std} | {c['sec_per_image']:.4f} | {file} |")
    lines += ["", f"Best search trials per budget ({settings['num']} samples, seed {settings['seed']}):", "",
              "| NFE budget | trial | sampler | NFE | FD |", "|---|---|---|---|---|"]
    for res in results:
        for r in res.trials[:shown]:
            lines.append(f"| {res.budget} | {r['index']} | {describe(r['spec'])} | {r['nfe']:g} | {r['fd']:.2f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[BudgetResult], path: str | Path) -> Path | None:
    """FD against NFE: every search trial as a dot, each budget's winner with its seed spread."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    trials = [r for res in results for r in res.trials]
    ax.scatter([r["nfe"] for r in trials], [r["fd"] for r in trials], s=10, alpha=0.35, color="gray", label="search trials")
    win = [res.winner for res in results]
    ax.errorbar([w["nfe"] for w in win], [w["fd"] for w in win], yerr=[w["fd_std"] or 0.0 for w in win], marker="o", capsize=3, label="winner (rescored)")
    ax.set_xlabel("NFE")
    ax.set_ylabel("FD (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
