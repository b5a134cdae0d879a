# Re-Sampling table (results/ablation_resampling; paper Table 14 analog): aligned vs anti-aligned re-noising.
from __future__ import annotations

from pathlib import Path

from paper_figures.sweep_results import ci, fmt_ci, fmt_win, load_sweep, provenance, run_summary, world_dim

EXPERIMENT = "ablation_resampling"
METHODS = {"strong": "strong (DDIM)", "resampling": "Re-Sampling (Alg. 2)",
           "resampling_anti": "Re-Sampling, anti-aligned noise (sim < 0)",
           "resampling_aligned": "Re-Sampling, aligned noise (sim ≥ 0)", "w2sd": "W2SD"}


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    jobs = sorted(load_sweep(results_root, EXPERIMENT), key=world_dim)
    first = jobs[0]
    parts = [f"*{run_summary(first)}; mean [95% bootstrap CI], wins = seeds on which the method beats strong.* "
             + provenance(EXPERIMENT)]
    for job in jobs:
        lines = [f"**{world_dim(job)}D world**", "",
                 "| method | TV of mode weights (wins) | W1 (wins) | NFE |", "|---|---|---|---|"]
        for method, label in METHODS.items():
            cells = [fmt_ci(ci(job, method, metric)) + ("" if method == "strong" else
                                                         f" ({fmt_win(job, method, metric)})")
                     for metric in ("tv_mode_weights", "w1")]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} | {job['nfe'][method]} |")
        parts.append("\n".join(lines))
    return {EXPERIMENT: "\n\n".join(parts)}
