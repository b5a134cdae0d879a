# Wall time of the test suite as CI runs it (README's test command) and of a plain `pytest -q`, stored for the docs.
"""`python -m benchmarks.time_tests [--out results/test_suite/results.json]` runs, one after the other and offline,
the pytest part of README.md's test command (every test, `slow` included) and a plain `python -m pytest -q` (the
quick loop), and stores each one's wall time and pytest's summary line. docs/development.md shows them (a generated
block, `python -m paper_figures`). The budgets: CI ≤ 10 min, the quick loop ≤ 5 min, on the project's 2-core
machine; wall times on a shared machine vary with its load, which is stored beside them."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from w2sd.provenance import provenance
from w2sd.results import RESULTS_SCHEMA_VERSION, atomic_write_json

ROOT = Path(__file__).resolve().parent.parent


def readme_pytest_command() -> list[str]:
    """The pytest part of the fenced command after `<!-- test-command -->` in README.md (the install step and the
    environment assignments are not timed: CI installs once, and this process sets the same environment)."""
    block = (ROOT / "README.md").read_text(encoding="utf-8").split("<!-- test-command -->", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", block, re.S).group(1).split("&&")[-1]
    return [word for word in shlex.split(command) if "=" not in word or word.startswith("-")]


def timed(command: list[str]) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "MPLBACKEND": "Agg"}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line and "=" not in line[:1]),
                   done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "")
    return {"command": shlex.join(["python" if c == sys.executable else c for c in command]), "wall_s": wall,
            "returncode": done.returncode, "summary": summary.strip("= "), "load_average_at_start": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.time_tests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "test_suite" / "results.json")
    args = parser.parse_args(argv)
    full = readme_pytest_command()
    runs = {"ci": timed([sys.executable if w == "python" else w for w in full]),
            "quick": timed([sys.executable, "-m", "pytest", "-q"])}
    for name, run in runs.items():
        print(f"{name:6s} {run['wall_s']:7.1f} s  rc {run['returncode']}  {run['summary']}  ({run['command']})")
    atomic_write_json(args.out, {
        "schema_version": RESULTS_SCHEMA_VERSION, "experiment": "test_suite", "metrics": runs,
        "environment": {"cpus": os.cpu_count(), "created": dt.datetime.now(dt.timezone.utc).isoformat(
            timespec="seconds"), **provenance()}})
    return 0 if all(r["returncode"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
