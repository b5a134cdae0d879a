# Start-up cost of the main job: process wall of `python run.py experiment=toy_gmm` and the part before sampling.
"""`python -m benchmarks.bench_startup [--repeats 3] [--baseline REF] [--out results/bench_startup/results.json]
[overrides]` runs
the README's main command (`python run.py experiment=toy_gmm`, W&B offline) in fresh processes from a scratch
folder (its outputs/ land there) and prints, per run, the process wall time and the time from process start to the
first denoiser call (imports, config composition and validation, world setup). The first run warms the file cache
and is reported but not counted. `--baseline REF` also runs the same command from a `git archive` of REF, the two
alternating run by run, and prints the ratio of the medians: on a shared machine whose speed drifts by tens of
per cent within minutes, only a ratio measured in one run says what a change bought.
Goal (issue 20): ≤ 7 s process wall, warm, on the project's 2-core machine. A benchmark, not a test: wall times on a
shared machine vary."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs run.py as `python run.py ...` would (runpy, __main__) and writes the wall-clock time of the first exact-score
# denoiser call to $W2SD_FIRST_CALL; the wrapper only observes the call, the denoiser itself is unchanged.
CHILD = """
import os, runpy, sys, time
import toy.gmm as gmm
original = gmm.ExactDenoiser.__call__
def observed(self, *args, **kwargs):
    if not os.path.exists(os.environ["W2SD_FIRST_CALL"]):
        with open(os.environ["W2SD_FIRST_CALL"], "w") as fh:
            fh.write(repr(time.time()))
    return original(self, *args, **kwargs)
gmm.ExactDenoiser.__call__ = observed
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def measure(overrides: list[str], root: Path = ROOT) -> dict[str, float]:
    """One fresh process of the main command of the checkout at `root`: {'wall_s', 'before_first_call_s'}."""
    with tempfile.TemporaryDirectory() as scratch:
        marker = Path(scratch) / "first_call"
        env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "W2SD_FIRST_CALL": str(marker),
               "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        # the parent's start time is the process start: the child's interpreter start-up counts as start-up
        # (importing toy.gmm first costs what run.py would pay for it anyway)
        start = time.time()
        done = subprocess.run([sys.executable, "-c", CHILD, str(root / "run.py"), "experiment=toy_gmm", *overrides],
                              cwd=scratch, env=env, capture_output=True, text=True)
        wall = time.time() - start
        if done.returncode != 0:
            raise SystemExit(f"error: the main command failed (exit {done.returncode}): {done.stderr[-500:]}")
        first = float(marker.read_text()) - start
    return {"wall_s": wall, "before_first_call_s": first}


def unpack(ref: str, into: Path) -> str:
    """`git archive` of `ref` unpacked under `into`; returns the full commit id."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True,
                            text=True)
    if commit.returncode != 0:
        raise SystemExit(f"error: --baseline {ref} is not a commit of {ROOT}; give a commit id, tag or branch")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit.stdout.strip()], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit.stdout.strip()


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    timed = runs[1:] or runs  # the first run warms the file cache
    return {k: statistics.median(r[k] for r in timed) for k in ("wall_s", "before_first_call_s")}


def show(label: str, runs: list[dict[str, float]]) -> None:
    for k, run in enumerate(runs):
        name = "warm-up" if k == 0 else f"run {k}"
        print(f"{label}{name:8s} process wall {run['wall_s']:6.2f} s   before the first denoiser call "
              f"{run['before_first_call_s']:6.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up run")
    parser.add_argument("--baseline", metavar="REF", help="also time this commit, alternating with the checkout")
    parser.add_argument("--out", type=Path, help="also store the runs here (docs/development.md shows them)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for the main command")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = unpack(args.baseline, Path(tmp)) if args.baseline else None
        runs, base_runs = [], []
        for _ in range(args.repeats + 1):
            if baseline:
                base_runs.append(measure(args.overrides, Path(tmp)))
            runs.append(measure(args.overrides))
    show("", runs)
    summary = median_of(runs)
    metrics: dict = {"median_warm": summary, "runs": runs}
    print(f"median (warm): process wall {summary['wall_s']:.2f} s, before the first denoiser call "
          f"{summary['before_first_call_s']:.2f} s (goal: process wall <= 7 s)")
    if baseline:
        show(f"{baseline[:10]} ", base_runs)
        base = median_of(base_runs)
        ratio = summary["wall_s"] / base["wall_s"]
        metrics["baseline"] = {"commit": baseline, "median_warm": base, "runs": base_runs, "wall_ratio": ratio}
        print(f"baseline {baseline[:10]} median (warm): process wall {base['wall_s']:.2f} s; this checkout / "
              f"baseline = {ratio:.2f}")
    print(json.dumps(summary))
    if args.out:
        from w2sd.provenance import provenance
        from w2sd.results import RESULTS_SCHEMA_VERSION, atomic_write_json

        atomic_write_json(args.out, {
            "schema_version": RESULTS_SCHEMA_VERSION, "experiment": "bench_startup",
            "config": {"command": "python run.py experiment=toy_gmm", "overrides": args.overrides,
                       "repeats": args.repeats, "wandb": "offline", "baseline": args.baseline},
            "metrics": metrics,
            "environment": {"cpus": os.cpu_count(), "load_average_at_start": load,
                            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            **provenance()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
