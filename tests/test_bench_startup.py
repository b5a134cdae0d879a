# The start-up benchmark runs the main command, and with --baseline times another commit beside it in one run.
import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import bench_startup

SMALL = ["num_samples=200", "diagnostic_samples=50", "sampler.T=10", "logger=none", "figures=false"]


@pytest.mark.slow
def test_baseline_runs_alternate_and_the_ratio_is_theirs(tmp_path: Path, capsys) -> None:
    out = tmp_path / "results.json"
    assert bench_startup.main(["--repeats", "1", "--baseline", "HEAD", "--out", str(out), *SMALL]) == 0
    stored = json.loads(out.read_text())
    base = stored["metrics"]["baseline"]
    head = subprocess.run(["git", "-C", str(bench_startup.ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert base["commit"] == head and len(base["runs"]) == len(stored["metrics"]["runs"]) == 2
    assert base["wall_ratio"] == pytest.approx(stored["metrics"]["median_warm"]["wall_s"]
                                               / base["median_warm"]["wall_s"])
    for run in [*base["runs"], *stored["metrics"]["runs"]]:
        assert 0 < run["before_first_call_s"] < run["wall_s"]
    assert "this checkout / baseline" in capsys.readouterr().out


def test_a_baseline_that_is_no_commit_is_one_error_line() -> None:
    with pytest.raises(SystemExit, match="--baseline no-such-ref is not a commit"):
        bench_startup.main(["--baseline", "no-such-ref"])
