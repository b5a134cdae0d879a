# Compute time of the committed toy ablation sweeps, summed from each job's stored total_time_s.
from __future__ import annotations

from pathlib import Path

from paper_figures.sweep_results import load_sweep
from toy.run_ablations import ABLATIONS


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    lines = ["| sweep | jobs | compute (s, summed over jobs) |", "|---|---|---|"]
    total_jobs, total_time = 0, 0.0
    for name in ABLATIONS:
        jobs = load_sweep(results_root, name)
        seconds = sum(j["total_time_s"] for j in jobs)
        total_jobs, total_time = total_jobs + len(jobs), total_time + seconds
        lines.append(f"| {name} | {len(jobs)} | {seconds:.0f} |")
    lines.append(f"| **all** | **{total_jobs}** | **{total_time:.0f}** |")
    return {"ablation_timing": "\n".join(lines)}
