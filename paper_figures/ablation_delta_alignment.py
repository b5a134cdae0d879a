# Δ1·Δ2 alignment figure and table (results/delta_alignment; paper App. E.1 / Fig. 19 analog).
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.sweep_results import ci, fmt_ci, fmt_win, load_sweep, provenance, save_figure, world_dim

EXPERIMENT = "delta_alignment"
VARIANTS = {"trained": "training-length MLPs, Δ2 from the longest-trained (paper)",
            "trained_vs_exact": "training-length MLPs, Δ2 from the exact ideal score",
            "exact": "exact biased mixtures of the toy world"}


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    jobs = sorted(load_sweep(results_root, EXPERIMENT), key=world_dim)
    fig, axes = plt.subplots(1, len(jobs), figsize=(4.8 * len(jobs), 3.4), squeeze=False)
    for ax, job in zip(axes[0], jobs):
        sigma = job["extra"]["sigma"]
        for variant, label in VARIANTS.items():
            curve = job["extra"]["cos_curves"][variant]
            ax.plot(sigma, curve["mean"], marker="o", ms=2.5, label=label)
            ax.fill_between(sigma, curve["ci_low"], curve["ci_high"], alpha=0.2, color=ax.lines[-1].get_color())
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("noise level σ of the sampling step")
        ax.set_title(f"{world_dim(job)}D: cos(Δ1, Δ2) per timestep")
    png = save_figure(fig, out_dir, EXPERIMENT, ylabel="cosine over all samples")
    first = jobs[0]
    steps = first["extra"]["training_steps"]
    head = (f"*Weak / strong / \"ideal\" MLPs trained on the ideal mixture for {steps['weak']} / {steps['strong']} / "
            f"{steps['ideal']} steps (the paper's 100/300/500-epoch ratio), {len(first['extra']['seeds'])} training "
            f"seeds; cosines along the strong model's DDIM trajectory ({first['config']['diagnostic_samples']} "
            f"samples, T = {first['config']['sampler']['T']}), mean [95% bootstrap CI] over seeds.* "
            + provenance(EXPERIMENT, png))
    lines = ["| world | variant | mean cos over timesteps | share of timesteps with cos > 0 |", "|---|---|---|---|"]
    for job in jobs:
        for variant, label in VARIANTS.items():
            stats = job["extra"]["alignment_ci"][variant]
            lines.append(f"| {world_dim(job)}D | {label} | {fmt_ci(stats['mean_cos'])} | "
                         f"{fmt_ci(stats['aligned_steps'], 2)} |")
    sampling = ["| world | method | TV of mode weights (wins) | W1 (wins) | within-mode std |", "|---|---|---|---|---|"]
    for job in jobs:
        for method in ("strong", "w2sd"):
            cells = [fmt_ci(ci(job, method, m)) + ("" if method == "strong" else f" ({fmt_win(job, method, m)})")
                     for m in ("tv_mode_weights", "w1")]
            sampling.append(f"| {world_dim(job)}D | {method} | {cells[0]} | {cells[1]} | "
                            f"{ci(job, method, 'within_mode_std')['mean']:.3f} |")
    return {EXPERIMENT: head + "\n" + "\n".join(lines) + "\n\nThe training-length trio used as a W2SD pair "
            "(strong = middle, weak = shortest training):\n\n" + "\n".join(sampling)}
