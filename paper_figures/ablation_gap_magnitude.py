# Gap magnitude/sign figures and tables: error vs weak-bias ratio (ablation_gap_magnitude) and vs gap scale γ.
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.sweep_results import band, ci, fmt_ci, fmt_win, load_sweep, provenance, run_summary, save_figure

METRIC = "tv_mode_weights"
GUIDED = {"w2sd": "W2SD (λ = T − 1)", "autoguidance": "autoguidance w = 1"}
SWEEPS = {
    "ablation_gap_magnitude": ("weak_bias_ratio", "weak bias / strong bias  r", 2.0,
                               "r = 2: the camera-ready theory's ideal ratio"),
    "ablation_gap_scale": ("weak_gap_scale", "gap scale γ  (ε_w ← ε_s + γ(ε_w − ε_s))", 0.25,
                           "γ = 1/(r − 1) = 0.25: effective ratio 2"),
}


def sweep_figure(jobs: list[dict], key: str, xlabel: str, mark: float, mark_label: str, out_dir: Path,
                 stem: str) -> str:
    xs = [j["config"]["ablation"][key] for j in jobs]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    for ax, metric, ylabel in ((axes[0], "target_mode_weight", "left-mode weight (ideal 0.5)"),
                               (axes[1], METRIC, "TV of mode weights to ideal")):
        for method, label in (("strong", "strong"), *GUIDED.items()):
            band(ax, xs, [ci(j, method, metric) for j in jobs], label,
                 **({"color": "gray", "ls": "--"} if method == "strong" else {}))
        ax.axvline(mark, color="tab:green", lw=1, ls=":", label=mark_label)
        ax.axvspan(min(xs), 1.0 if key == "weak_bias_ratio" else 0.0, color="tab:red", alpha=0.07,
                   label="reversed gap (Δ1 against Δ2)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0].axhline(0.5, color="black", lw=0.8)
    axes[1].set_yscale("log")
    return save_figure(fig, out_dir, stem, ylabel="left-mode weight (ideal 0.5)")


def findings(jobs: list[dict], key: str, no_gap: float) -> str:
    """Sentences computed from the stored numbers: where W2SD's error is smallest, and what a reversed gap does."""
    xs = [j["config"]["ablation"][key] for j in jobs]
    errors = [ci(j, "w2sd", METRIC)["mean"] for j in jobs]
    best = min(range(len(jobs)), key=errors.__getitem__)
    reversed_jobs = [j for x, j in zip(xs, jobs) if x < no_gap]
    worse = [j for j in reversed_jobs if ci(j, "w2sd", METRIC)["mean"] > ci(j, "strong", METRIC)["mean"]]
    losses = sum(j["extra"]["win_rates"]["w2sd"][METRIC]["losses"] for j in reversed_jobs)
    pairs = sum(len(j["extra"]["seeds"]) for j in reversed_jobs)
    return (f"W2SD's error is smallest at {key} = {xs[best]:g} (TV {fmt_ci(ci(jobs[best], 'w2sd', METRIC))}, strong "
            f"{ci(jobs[best], 'strong', METRIC)['mean']:.3f}). With a reversed gap ({key} < {no_gap:g}) W2SD is worse "
            f"than the strong model on average at {len(worse)} of {len(reversed_jobs)} settings and loses on "
            f"{losses} of {pairs} seed pairs.")


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    blocks = {}
    for experiment, (key, xlabel, mark, mark_label) in SWEEPS.items():
        jobs = sorted(load_sweep(results_root, experiment), key=lambda j: j["config"]["ablation"][key])
        png = sweep_figure(jobs, key, xlabel, mark, mark_label, out_dir, experiment)
        first = jobs[0]
        world = first["config"]["world"]
        head = (f"*Strong weights {first['extra']['strong_weights']}, ideal {world['ideal_weights']}; "
                f"{run_summary(first)}; TV of mode weights to the ideal, mean [95% bootstrap CI], wins = seeds "
                f"on which the method beats strong.* " + provenance(experiment, png) + "\n"
                + findings(jobs, key, 1.0 if key == "weak_bias_ratio" else 0.0) + "\n")
        weak_column = "weak weights" if key == "weak_bias_ratio" else "weak weights (ε gap then scaled by γ)"
        lines = [f"| {key} | {weak_column} | ideal (floor) | strong | W2SD (wins) | autoguidance w=1 (wins) |",
                 "|---|---|---|---|---|---|"]
        for job in jobs:
            weak = ", ".join(f"{w:.3f}" for w in job["extra"]["weak_weights"])
            lines.append(f"| {job['config']['ablation'][key]:g} | {weak} | {ci(job, 'ideal', METRIC)['mean']:.3f} | "
                         f"{fmt_ci(ci(job, 'strong', METRIC))} | "
                         + " | ".join(f"{fmt_ci(ci(job, m, METRIC))} ({fmt_win(job, m, METRIC)})" for m in GUIDED)
                         + " |")
        blocks[experiment] = head + "\n" + "\n".join(lines)
    return blocks
