# Wall times of the test suite (CI command and quick loop) and of the main job's start-up, from stored runs.
from __future__ import annotations

from pathlib import Path

from paper_figures.common import require_results

SUITE = "python -m benchmarks.time_tests"
STARTUP = "python -m benchmarks.bench_startup --baseline 8465c21 --out results/bench_startup/results.json"


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    suite = require_results(results_root, "test_suite", SUITE)
    env = suite["environment"]
    lines = ["| run | command | wall (min) | budget (min) | pytest summary |", "|---|---|---|---|---|"]
    for name, budget in (("ci", 10), ("quick", 5)):
        run = suite["metrics"][name]
        lines.append(f"| {'CI (README test command)' if name == 'ci' else 'quick loop'} | `{run['command']}` | "
                     f"{run['wall_s'] / 60:.1f} | {budget} | {run['summary']} |")
    head = (f"*Stored by `{SUITE}` on {env['created'][:10]} (commit {str(env['git_commit'])[:10]}), {env['cpus']} "
            f"CPU cores, 1-minute load average {suite['metrics']['ci']['load_average_at_start']:.1f} when the CI run "
            "started (the machine is shared: a busy neighbour stretches every wall time).*")
    startup = require_results(results_root, "bench_startup", STARTUP)
    median, senv = startup["metrics"]["median_warm"], startup["environment"]
    start = (f"`python run.py experiment=toy_gmm` (W&B offline), median of {startup['config']['repeats']} warm runs "
             f"stored by `{STARTUP}`: process wall **{median['wall_s']:.1f} s**, of which "
             f"{median['before_first_call_s']:.1f} s before the first denoiser call (goal: process wall ≤ 7 s; "
             f"{senv['cpus']} cores, load average {senv['load_average_at_start']:.1f} at the start).")
    base = startup["metrics"].get("baseline")
    if base:
        start += (f" In the same run, alternating with it, commit {base['commit'][:7]} took "
                  f"{base['median_warm']['wall_s']:.1f} s: a ratio of **{base['wall_ratio']:.2f}**, which holds when "
                  "the shared machine's speed drifts.")
    return {"test_suite_timing": "\n".join([head, "", *lines]), "startup_timing": start}
