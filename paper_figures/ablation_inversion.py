# Inversion ablation figure and table (results/ablation_inversion): exact vs official, injected error k, S2WD.
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.sweep_results import (
    band,
    ci,
    fmt_ci,
    fmt_win,
    load_sweep,
    provenance,
    run_summary,
    save_figure,
    world_dim,
)

EXPERIMENT = "ablation_inversion"
METRIC = "tv_mode_weights"
METHODS = {"w2sd": "W2SD", "s2wd": "S2WD"}


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    jobs = load_sweep(results_root, EXPERIMENT)
    key = lambda j: (world_dim(j), j["config"]["sampler"]["inversion"], j["config"]["sampler"]["inversion_noise"])  # noqa: E731
    jobs.sort(key=key)
    dims = sorted({world_dim(j) for j in jobs})
    fig, axes = plt.subplots(1, len(dims), figsize=(4.6 * len(dims), 3.4), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        for inversion in ("exact", "official"):
            runs = [j for j in jobs if world_dim(j) == dim and j["config"]["sampler"]["inversion"] == inversion]
            ks = [j["config"]["sampler"]["inversion_noise"] for j in runs]
            for method, label in METHODS.items():
                band(ax, ks, [ci(j, method, METRIC) for j in runs], f"{label}, {inversion} inversion",
                     ls="-" if inversion == "exact" else "--")
        ax.axhline(ci(runs[0], "strong", METRIC)["mean"], color="gray", lw=1, ls=":", label="strong")
        ax.set_xscale("symlog", linthresh=0.005)
        ax.set_xlim(0, max(ks) * 1.2)
        ax.set_xlabel("injected inversion error k (k·z per reflection)")
        ax.set_title(f"{dim}D, exact ε")
    png = save_figure(fig, out_dir, EXPERIMENT, ylabel="TV of mode weights to ideal")
    weights = ", ".join(f"{role} weights {[round(w, 3) for w in jobs[0]['extra'][f'{role}_weights']]}"
                        for role in ("strong", "weak"))
    head = (f"*{weights}; {run_summary(jobs[0])}; TV of mode weights, "
            f"mean [95% bootstrap CI] (wins over strong); W1 to an ideal sample in the last column.* "
            + provenance(EXPERIMENT, png))
    lines = ["| world | inversion | k | strong | W2SD (wins) | S2WD (wins) | W1: strong → W2SD |",
             "|---|---|---|---|---|---|---|"]
    for job in jobs:
        dim, inversion, k = key(job)
        lines.append(f"| {dim}D | {inversion} | {k:g} | {ci(job, 'strong', METRIC)['mean']:.3f} | "
                     + " | ".join(f"{fmt_ci(ci(job, m, METRIC))} ({fmt_win(job, m, METRIC)})" for m in METHODS)
                     + f" | {ci(job, 'strong', 'w1')['mean']:.3f} → {ci(job, 'w2sd', 'w1')['mean']:.3f} |")
    return {EXPERIMENT: head + "\n" + "\n".join(lines)}
