# λ sweep figure and table (results/ablation_reflection_steps): error vs reflected steps, window, reflections/step.
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.sweep_results import band, ci, fmt_ci, fmt_win, load_sweep, provenance, save_figure, world_dim

EXPERIMENT = "ablation_reflection_steps"
VARIANTS = {"w2sd": "first λ steps (paper)", "w2sd_last": "last λ steps", "w2sd_x2": "first λ, 2 reflections/step"}
METRIC = "tv_mode_weights"


def panels(jobs: list[dict]) -> dict[tuple[int, str], list[dict]]:
    """Jobs per (world dimension, model kind), sorted by λ."""
    out: dict[tuple[int, str], list[dict]] = {}
    for job in jobs:
        out.setdefault((world_dim(job), job["config"]["model"]["kind"]), []).append(job)
    return {k: sorted(v, key=lambda j: j["extra"]["lam"]) for k, v in sorted(out.items())}


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    jobs = load_sweep(results_root, EXPERIMENT)
    groups = panels(jobs)
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.2), squeeze=False)
    for ax, ((dim, kind), runs) in zip(axes[0], groups.items()):
        lams = [j["extra"]["lam"] for j in runs]
        band(ax, lams, [ci(j, "strong", METRIC) for j in runs], "strong (no reflection)", color="gray", ls="--")
        for method, label in VARIANTS.items():
            band(ax, lams, [ci(j, method, METRIC) for j in runs], label)
        ax.set_title(f"{dim}D, {kind} ε")
        ax.set_xlabel("reflected steps λ (T = 50)")
    png = save_figure(fig, out_dir, EXPERIMENT, ylabel="TV of mode weights to ideal")

    first = next(iter(groups.values()))[0]
    header = (f"*W2SD with λ of T = {first['config']['sampler']['T']} steps reflected; "
              f"{len(first['extra']['seeds'])} seeds × {first['config']['num_samples']} samples per point; cells: "
              f"TV of mode weights to the ideal (lower is better), mean [95% bootstrap CI], and per-seed wins over "
              f"the strong model.* " + provenance(EXPERIMENT, png))
    cols = [f"{dim}D {kind}" for dim, kind in groups]
    lines = ["| λ | " + " | ".join(f"{c}: strong | {c}: W2SD (wins)" for c in cols) + " |",
             "|---|" + "---|---|" * len(cols)]
    for row, lam in enumerate(j["extra"]["lam"] for j in next(iter(groups.values()))):
        cells = []
        for runs in groups.values():
            job = runs[row]
            cells += [f"{ci(job, 'strong', METRIC)['mean']:.3f}",
                      f"{fmt_ci(ci(job, 'w2sd', METRIC))} ({fmt_win(job, 'w2sd', METRIC)})"]
        lines.append(f"| {lam} | " + " | ".join(cells) + " |")
    variants = ["| world, ε | λ | " + " | ".join(VARIANTS.values()) + " |", "|---|---|" + "---|" * len(VARIANTS)]
    for (dim, kind), runs in groups.items():
        for job in runs:
            if job["extra"]["lam"] in (5, 20, 49):
                variants.append(f"| {dim}D {kind} | {job['extra']['lam']} | " + " | ".join(
                    f"{fmt_ci(ci(job, m, METRIC))} ({fmt_win(job, m, METRIC)})" for m in VARIANTS) + " |")
    return {EXPERIMENT: header + "\n" + "\n".join(lines) + "\n\nWindow position and reflections per step (same "
            "cells):\n\n" + "\n".join(variants)}
