# `python run.py` end to end: results.json, figures, offline W&B run; bad input gives one line and no folder.
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_toy_gmm_end_to_end_writes_results_figures_and_wandb(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("experiment=toy_gmm", "num_samples=400", "diagnostic_samples=100", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["experiment"] == "toy_gmm" and results["schema_version"] == 1
    assert set(results["metrics"]) >= {"ideal", "weak", "strong", "w2sd", "s2wd", "autoguidance", "resampling"}
    assert results["nfe"]["w2sd"] == 50 + 2 * 49 and results["nfe"]["strong"] == 50
    assert results["config"]["sampler"]["T"] == 50 and "paths" not in results["config"]
    for rel in results["figures"].values():
        assert (run_dir / rel).stat().st_size > 1000
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    assert "w2sd" in proc.stdout and "target_mode_weight" in proc.stdout
    assert not list(run_dir.glob("**/*.tmp"))


@pytest.mark.parametrize("args,needle", [
    (["experiment=toy_gmm", "sampler.lam=50"], "sampler.lam=50"),
    (["experiment=toy_gmm", "world.weak_weights=[0.2,0.2]"], "sums to 0.4"),
    ([], "no experiment chosen"),
])
def test_bad_input_one_line_and_no_run_dir(args: list[str], needle: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "rejected"
    proc = run_cli(*args, f"hydra.run.dir={run_dir}", "logger=none")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert not run_dir.exists()


def test_unknown_experiment_and_key_are_rejected(tmp_path: Path) -> None:
    """Hydra's composition errors as one `error:` line, exit code 2, with a did-you-mean (issue 20)."""
    for args, needle in ((["experiment=toy_gmn"], "error: experiment=toy_gmn is not a config under conf/experiment/; "
                                                  "did you mean experiment=toy_gmm?"),
                         (["experiment=toy_gmm", "nosuchkey=1"], "error: nosuchkey=1 is not a key of the composed "
                                                                 "config (a new key needs a +: +nosuchkey=1)"),
                         (["experiment=toy_gmm", "sampler.lamda=3"], "error: sampler.lamda=3 is not a key of the "
                                                                     "composed config; did you mean sampler.lam?"),
                         (["experiment=toy_gmm", "sampler.lam=[1,"], "error: cannot parse the override "
                                                                     "'sampler.lam=[1,'")):
        proc = run_cli(*args, f"hydra.run.dir={tmp_path / 'x'}")
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(needle), proc.stderr
        assert not (tmp_path / "x").exists()


def test_every_experiment_config_passes_the_schema(compose_config) -> None:
    """The typed schemas (w2sd/config_schema.py) accept every shipped experiment as it is."""
    from w2sd.config_schema import check_config

    for path in sorted((ROOT / "conf" / "experiment").glob("*.yaml")):
        check_config(compose_config([f"experiment={path.stem}"]))
