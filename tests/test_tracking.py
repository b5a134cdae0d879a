# W&B beside the run: it logs what results.json holds, closes a run that raised as failed, and a failure costs nothing.
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from toy.experiment import ToyGMMExperiment
from w2sd.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["experiment=toy_gmm", "num_samples=200", "diagnostic_samples=50", "sampler.T=10", "logger=wandb"]


def offline_run(run_dir: Path) -> Path:
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    return run


def test_the_logged_table_and_figures_are_the_results(compose_config, tmp_path: Path) -> None:
    results = run_experiment(compose_config(SMALL), tmp_path)
    run = offline_run(tmp_path)
    (table,) = (run / "files" / "media" / "table").glob("results_*.table.json")
    logged = json.loads(table.read_text())
    rows = {row[0]: dict(zip(logged["columns"][1:], row[1:])) for row in logged["data"]}
    assert set(rows) == set(results["metrics"])
    for method, row in rows.items():
        for key, value in row.items():
            assert value == results["metrics"][method][key], (method, key)
    figures = sorted(p.name.split("_0_")[0] for p in (run / "files" / "media" / "images" / "figures").glob("*.png"))
    assert figures == sorted(results["figures"])
    assert "got exitcode: 0" in (run / "logs" / "debug.log").read_text()


def test_a_run_that_raised_is_closed_as_failed_and_the_error_propagates(compose_config, tmp_path: Path,
                                                                         monkeypatch) -> None:
    def broken(self, run_dir):
        raise RuntimeError("the denoiser blew up")

    monkeypatch.setattr(ToyGMMExperiment, "run", broken)
    with pytest.raises(RuntimeError, match="blew up"):
        run_experiment(compose_config(SMALL), tmp_path)
    run = offline_run(tmp_path)  # the W&B child has closed its run before the error reached us
    assert "got exitcode: 1" in (run / "logs" / "debug.log").read_text()
    assert not (tmp_path / "results.json").exists()


def test_a_wandb_failure_is_one_warning_and_the_results_stand(compose_config, tmp_path: Path, monkeypatch,
                                                               caplog) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with caplog.at_level(logging.WARNING):
        results = run_experiment(compose_config([*SMALL, "logger.mode=no-such-mode"]), tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] == results["metrics"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "W&B logging failed" in warnings[0] and "no-such-mode" in warnings[0], warnings


def test_the_experiment_process_never_imports_wandb(tmp_path: Path) -> None:
    """W&B's start-up runs in its own process, beside the experiment, not in front of it (issue 20, part 7)."""
    marker = tmp_path / "imported"
    code = (f"import atexit, runpy, sys; atexit.register(lambda: open({str(marker)!r}, 'w').write(str('wandb' in "
            f"sys.modules))); sys.argv = ['run.py', {', '.join(map(repr, SMALL))}, 'hydra.run.dir={tmp_path}']; "
            "runpy.run_path('run.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.read_text() == "False"
    assert offline_run(tmp_path).is_dir() and "W&B offline run:" in proc.stdout
