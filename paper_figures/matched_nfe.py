# Quality vs NFE curves and the matched-budget table (results/compare_matched_nfe; paper Fig. 13, reviewers' ask).
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.sweep_results import ci, fmt_ci, load_sweep, provenance, save_figure
from w2sd.stats import win_rate

EXPERIMENT = "compare_matched_nfe"
METHODS = {"strong": "standard DDIM", "w2sd": "W2SD λ = T − 1", "w2sd_half": "W2SD λ = ⌊T/2⌋",
           "guidance_w025": "guidance w = 0.25", "guidance_w05": "guidance w = 0.5", "guidance_w1": "guidance w = 1"}
GUIDANCE = ("guidance_w025", "guidance_w05", "guidance_w1")
METRICS = {"tv_mode_weights": "TV of mode weights", "w1": "W1 to ideal sample"}


def by_pair(jobs: list[dict]) -> dict[float, dict[int, dict]]:
    """ratio → T → job."""
    out: dict[float, dict[int, dict]] = {}
    for job in jobs:
        out.setdefault(job["config"]["ablation"]["weak_bias_ratio"], {})[job["config"]["sampler"]["T"]] = job
    return {r: dict(sorted(v.items())) for r, v in sorted(out.items())}


def wins_over(job: dict, method: str, other: dict, metric: str) -> str:
    """Per-seed wins (lower error, same seed index) of `method` in `job` over standard DDIM in `other`."""
    w = win_rate([-v for v in job["extra"]["per_seed"][method][metric]],
                 [-v for v in other["extra"]["per_seed"]["strong"][metric]])
    return f"{w.wins}/{w.n}"


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    pairs = by_pair(load_sweep(results_root, EXPERIMENT))
    fig, axes = plt.subplots(len(METRICS), len(pairs), figsize=(4.8 * len(pairs), 3.0 * len(METRICS)), squeeze=False)
    for col, (ratio, runs) in enumerate(pairs.items()):
        for row, (metric, ylabel) in enumerate(METRICS.items()):
            ax = axes[row][col]
            for method, label in METHODS.items():
                nfe = [job["nfe"][method] for job in runs.values()]
                ax.plot(nfe, [ci(job, method, metric)["mean"] for job in runs.values()], marker="o", ms=3,
                        label=label, ls="--" if method.startswith("guidance") else "-")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("NFE (counted denoiser calls)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"weak bias = {ratio:g} × strong bias")
    axes[0][0].legend(fontsize=6)
    png = save_figure(fig, out_dir, EXPERIMENT)

    first = next(iter(next(iter(pairs.values())).values()))
    parts = [f"*1D, strong weights {first['extra']['strong_weights']}, exact ε; {len(first['extra']['seeds'])} seeds × "
             f"{first['config']['num_samples']} samples; mean [95% bootstrap CI]. At each budget, standard DDIM runs "
             f"T = 2k steps and the others T = k: W2SD with λ = ⌊k/2⌋ (NFE k + 2⌊k/2⌋, the paper's equal-time "
             f"setting) and difference guidance (NFE 2k) with the best of w ∈ {{0.25, 0.5, 1}} chosen per budget "
             f"after the fact (favours the baseline). Wins: seeds on which the method beats standard DDIM at the "
             f"same budget.* " + provenance(EXPERIMENT, png).rstrip()]
    for ratio, runs in pairs.items():
        lines = [f"**weak bias = {ratio:g} × strong bias** (weak weights "
                 f"{[round(w, 3) for w in next(iter(runs.values()))['extra']['weak_weights']]})", "",
                 "| NFE budget | metric | standard (T = 2k) | W2SD λ = ⌊k/2⌋ (T = k), wins | best guidance (T = k), "
                 "wins |", "|---|---|---|---|---|"]
        for k, job in runs.items():
            if 2 * k not in runs:
                continue
            std = runs[2 * k]
            for metric, name in METRICS.items():
                guide = min(GUIDANCE, key=lambda m, mt=metric: ci(job, m, mt)["mean"])
                lines.append(f"| {std['nfe']['strong']} vs {job['nfe']['w2sd_half']} | {name} | "
                             f"{fmt_ci(ci(std, 'strong', metric))} | {fmt_ci(ci(job, 'w2sd_half', metric))}, "
                             f"{wins_over(job, 'w2sd_half', std, metric)} | {fmt_ci(ci(job, guide, metric))} "
                             f"(w = {job['extra']['resolved_methods'][guide]['options']['w']:g}), "
                             f"{wins_over(job, guide, std, metric)} |")
        parts.append("\n".join(lines))
    return {EXPERIMENT: "\n\n".join(parts)}
