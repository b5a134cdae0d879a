# README table of the W2SD cost benchmark (NFE, UNet rows, wall time) from results/bench_overhead/results.json.
from __future__ import annotations

from pathlib import Path

from paper_figures.common import require_results

COMMAND = "python -m benchmarks.bench_overhead"


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    res = require_results(results_root, "bench_overhead", COMMAND)
    cfg, summary = res["config"], res["extra"]["summary"]
    lines = ["| method | NFE | UNet batch-rows | wall time (s) |", "|---|---|---|---|"]
    for name, row in res["metrics"].items():
        wall = "–" if row["wall_time_s"] is None else f"{row['wall_time_s']:.3f}"
        lines.append(f"| {name} | {row['nfe']} | {row['unet_rows']} | {wall} |")
    head = (f"*{cfg['pipeline']}, T = {cfg['T']}, λ = {cfg['lam']}, legs LoRA 0.8 / −1.5 at CFG 1, main step LoRA "
            f"0.8 at CFG 5.5; minimum of {cfg['repeats']} interleaved repeats, {res['environment']['threads']} "
            f"CPU threads (`{COMMAND}`).*")
    tail = (f"wall(W2SD)/wall(standard) ÷ NFE ratio = **{summary['overhead_per_nfe']:.3f}**; "
            f"÷ UNet-row ratio = {summary['overhead_per_row']:.3f}; "
            f"released-code rows ÷ ours = **{summary['released_rows_over_ours']:.3f}**.")
    from benchmarks.bench_overhead import docs_table  # the benchmark's own table of both stored sizes

    return {"bench_overhead": "\n".join([head, "", *lines, "", tail]),
            "bench_cost": docs_table(results_root=results_root)}
