# Shared helpers of the ablation figure scripts: loading a stored sweep, formatting CIs, saving PNG + PDF.
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from w2sd.results import atomic_savefig, load_results  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

# README image links point here (the default `python -m paper_figures` output folder, committed), whatever out_dir
# a particular call writes to, so `--check` into a temporary folder produces the same markdown.
README_FIGURE_DIR = "paper_figures/out"


def sweep_command(experiment: str) -> str:
    """The command that (re)creates the committed sweep results/<experiment>/<job>/results.json."""
    return f"python -m toy.run_ablations --root results --logger none --only {experiment}"


def provenance(experiment: str, png: str | None = None) -> str:
    """`Produced by `<command>`.` and, given a figure, its README image line."""
    text = f"Produced by `{sweep_command(experiment)}`."
    return text + (f"\n\n![{experiment}]({png})\n" if png else "")


def load_sweep(results_root: Path, experiment: str) -> list[dict]:
    """Every job's results.json of a stored sweep (schema-checked), in a stable order."""
    folder = Path(results_root) / experiment
    paths = sorted(folder.glob("*/results.json"))
    if not paths:
        raise ConfigError(f"no results of the {experiment} sweep in {folder}; produce them with "
                          f"`{sweep_command(experiment)}`")
    jobs = [load_results(p) for p in paths]
    for path, job in zip(paths, jobs):
        if job.get("experiment") != experiment:
            raise ConfigError(f"{path} holds experiment {job.get('experiment')!r}, not {experiment!r}; "
                              f"remove it and re-run `{sweep_command(experiment)}`")
    return jobs


def world_dim(job: dict) -> int:
    return len(job["config"]["world"]["means"][0])


def ci(job: dict, method: str, metric: str) -> dict:
    """{mean, ci_low, ci_high, n} of a method's metric over the job's seeds."""
    return job["extra"]["ci"][method][metric]


def fmt_ci(interval: dict, digits: int = 3) -> str:
    return f"{interval['mean']:.{digits}f} [{interval['ci_low']:.{digits}f}, {interval['ci_high']:.{digits}f}]"


def fmt_win(job: dict, method: str, metric: str) -> str:
    """Per-seed wins of `method` over the job's baseline on an error metric, e.g. `5/5` or `0/5, 5 ties`."""
    w = job["extra"]["win_rates"][method][metric]
    ties = f", {w['ties']} ties" if w["ties"] else ""
    return f"{w['wins']}/{w['wins'] + w['ties'] + w['losses']}{ties}"


def run_summary(job: dict) -> str:
    """`T = 50, λ = 49, exact ε; 5 seeds × 5000 samples` for a job of a sweep."""
    cfg = job["config"]
    lam = f", λ = {job['extra']['lam']}" if "lam" in job["extra"] else ""
    return (f"T = {cfg['sampler']['T']}{lam}, {cfg['model']['kind']} ε; {len(job['extra']['seeds'])} seeds × "
            f"{cfg['num_samples']} samples")


def save_figure(fig: plt.Figure, out_dir: Path, stem: str, ylabel: str | None = None) -> str:
    """Label the first panel, write out_dir/stem.png and .pdf; returns the README path of the PNG."""
    if ylabel is not None:
        fig.axes[0].set_ylabel(ylabel)
        fig.axes[0].legend(fontsize=6)
    fig.tight_layout()
    atomic_savefig(fig, Path(out_dir) / f"{stem}.png", dpi=110)
    atomic_savefig(fig, Path(out_dir) / f"{stem}.pdf", metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)
    return f"{README_FIGURE_DIR}/{stem}.png"


def band(ax: plt.Axes, xs: list[float], intervals: list[dict], label: str, **style: object) -> None:
    """Mean line with its 95% CI as a shaded band."""
    ax.plot(xs, [i["mean"] for i in intervals], marker="o", ms=3, label=label, **style)
    ax.fill_between(xs, [i["ci_low"] for i in intervals], [i["ci_high"] for i in intervals], alpha=0.2,
                    color=ax.lines[-1].get_color())
