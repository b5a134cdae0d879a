# Resumable sweeps: an interrupted Hydra multirun re-run skips finished jobs; bad sweeps fail with one clear line.
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from in_process import run_here

from paper_figures.sweep_results import load_sweep
from toy import run_ablations
from w2sd.validation import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TINY = ["logger=none", "num_samples=60", "num_seeds=2", "sampler.T=4", "model=exact", "world=gmm_1d"]


def multirun(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`python run.py -m ARGS` in this process (imports are already paid for); returns (exit code, output)."""
    code, out, err = run_here(["-m", *args], capsys, monkeypatch)
    return code, out + err


def snapshot(folder: Path) -> dict[str, tuple[float, bytes]]:
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.glob("*/results.json")}


def test_interrupted_sweep_resumes_without_recomputing(tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "ablation_reflection_steps"
    sweep = ["experiment=ablation_reflection_steps", f"hydra.sweep.dir={folder}", *TINY]
    code, out = multirun([*sweep, "sampler.lam=2"], capsys, monkeypatch)  # the part a killed sweep had finished
    assert code == 0
    before = snapshot(folder)
    assert sorted(before) == ["model=exact,num_samples=60,num_seeds=2,sampler.T=4,sampler.lam=2,world=gmm_1d"]

    code, out = multirun([*sweep, "sampler.lam=2,3"], capsys, monkeypatch)
    assert code == 0
    assert out.count("skipped: ") == 1
    after = snapshot(folder)
    assert len(after) == 2
    assert {k: after[k] for k in before} == before  # finished jobs untouched, byte for byte
    assert [len(j["extra"]["seeds"]) for j in load_sweep(tmp_path, "ablation_reflection_steps")] == [2, 2]


def test_a_bad_job_stops_the_sweep_before_its_first_job(tmp_path: Path, capsys, monkeypatch) -> None:
    """Issue 20: `sampler.lam=3,abc` ran the first job before refusing the second; the whole sweep is checked first."""
    for bad, message in [("sampler.lam=3,abc", "error: sampler.lam='abc' must be an integer or null (sweep job #1"),
                         ("sampler.lam=2,9", "error: sampler.lam=9 must be in [0, 3]")]:
        folder = tmp_path / bad.replace("=", "_").replace(",", "_")
        code, out = multirun(["experiment=ablation_reflection_steps", f"hydra.sweep.dir={folder}", *TINY, bad],
                             capsys, monkeypatch)
        assert code == 2 and message in out and out.count("error:") == 1, out
        assert "nfe" not in out and not folder.exists()  # no job ran, no sweep folder was made


def test_plain_sweep_runs_and_writes_where_the_docs_say(tmp_path: Path, capsys, monkeypatch) -> None:
    """Issue 20: the plain sweep with no hydra.* override crashed ("HydraConfig was not set ... hydra.sweep.dir").
    Run verbatim from a fresh folder; the job folders follow docs/configuration.md's pattern."""
    documented = "`outputs/<name>/multiruns/<same>/<overrides>/`"
    assert documented in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    code, out, err = run_here(["-m", "experiment=toy_gmm", "sampler.lam=10,20", "num_samples=2000"], capsys,
                              monkeypatch, cwd=tmp_path)
    assert code == 0, err[-2000:]
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("outputs/*/multiruns/*/*/results.json"))
    assert len(found) == 2, found
    run_id = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{6}-[0-9a-f]{4}"  # <YYYY-MM-DD_HH-MM-SS.ffffff>-<4 hex>
    pattern = rf"outputs/toy_gmm/multiruns/{run_id}/num_samples=2000,sampler.lam=(10|20)/results.json"
    assert all(re.fullmatch(pattern, f) for f in found), found
    assert len({Path(f).parent.parent for f in found}) == 1  # one sweep folder for both jobs
    lams = [json.loads((tmp_path / f).read_text())["config"]["sampler"]["lam"] for f in found]
    assert lams == [10, 20]  # each job ran its own override
    nfe = [json.loads((tmp_path / f).read_text())["nfe"]["w2sd"] for f in found]
    assert nfe == [50 + 2 * 10, 50 + 2 * 20]  # W2SD costs T + 2λ calls (paper): the sweep value reached the sampler


def test_documented_ablation_sweep_runs_without_hydra_overrides(tmp_path: Path, capsys, monkeypatch) -> None:
    """Issue 20: `python run.py -m experiment=ablation_gap_scale` (docs/ablations.md) failed like the plain sweep; here
    in a small form (1 seed, 60 samples, T = 4: the sweep over its 10 γ values is the config's own)."""
    code, out, err = run_here(["-m", "experiment=ablation_gap_scale", "num_seeds=1", "num_samples=60", "sampler.T=4",
                               "logger=none"], capsys, monkeypatch, cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert "`outputs/<experiment>/sweep/<overrides>/`" in (ROOT / "docs" / "ablations.md").read_text(encoding="utf-8")
    jobs = sorted(p.parent.name for p in (tmp_path / "outputs" / "ablation_gap_scale" / "sweep").glob("*/results.json"))
    gammas = [-1, -0.5, 0, 0.1, 0.25, 0.4, 0.5, 0.75, 1, 1.5]
    assert jobs == sorted(f"ablation.weak_gap_scale={g},num_samples=60,num_seeds=1,sampler.T=4" for g in gammas)


@pytest.mark.slow
def test_killed_sweep_process_resumes(tmp_path: Path) -> None:
    """A real SIGKILL of the multirun process midway; the re-run completes and keeps what was finished."""
    args = [sys.executable, "run.py", "-m", "experiment=ablation_gap_magnitude", f"hydra.sweep.dir={tmp_path}",
            "logger=none", "num_samples=2000", "num_seeds=2", "ablation.weak_bias_ratio=0,1,2,3,4,-1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while not list(tmp_path.glob("*/results.json")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = snapshot(tmp_path)
    assert 1 <= len(before) < 6
    assert not list(tmp_path.glob("*/.results.json.*"))  # atomic writes: no half-written results
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("skipped: ") == len(before)
    after = snapshot(tmp_path)
    assert len(after) == 6 and {k: after[k] for k in before} == before


def test_unknown_sweep_parameter_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    code, out = multirun(["experiment=ablation_resampling", f"hydra.sweep.dir={tmp_path}", *TINY,
                          "sampler.lamda=1,2"], capsys, monkeypatch)
    assert code == 2
    assert "error: sampler.lamda=1,2 is not a key of the composed config; did you mean sampler.lam?" in out
    assert out.count("\n") == 1 and not list(tmp_path.iterdir())
    assert run_ablations.main(["--check", "--only", "ablation_resampling", "sampler.lamda=1,2"]) == 2
    assert "unknown sweep parameter or value?): Could not override 'sampler.lamda'" in capsys.readouterr().err


def test_empty_sweep_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    code, out = multirun(["experiment=ablation_resampling", f"hydra.sweep.dir={tmp_path / 's'}", *TINY,
                          "sampler.lam=range(3,3)"], capsys, monkeypatch)
    assert code == 2 and "has no jobs" in out and not (tmp_path / "s").exists()


@pytest.mark.parametrize("override, message", [
    ("sampler.lam=range(3,3)", "the sweep over sampler.lam (range(3,3)) has no values"),
    ("world=choice()", "empty choice is not legal"),
    ("num_seeds=0", "num_seeds=0 must be >= 1"),
    ("world=gmm_3d,gmm_1d", "Could not find 'world/gmm_3d'"),
])
def test_bad_sweep_is_rejected_before_any_job(override: str, message: str, capsys) -> None:
    assert run_ablations.main(["--check", "--only", "ablation_resampling", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ablation_resampling") and message in err and err.count("\n") == 1


def test_sweep_spec_and_jobs() -> None:
    params = run_ablations.sweep_params("ablation_reflection_steps", ["sampler.lam=0,3", "num_seeds=2"])
    assert params == {"model": ["exact", "trained"], "sampler.lam": ["0", "3"], "world": ["gmm_1d", "gmm_2d"],
                      "num_seeds": ["2"]}
    jobs = run_ablations.sweep_jobs(params)
    assert len(jobs) == 8 and jobs[0] == ["model=exact", "sampler.lam=0", "world=gmm_1d", "num_seeds=2"]
    assert run_ablations.check_sweep("ablation_resampling", []) == 2


def test_slurm_launcher_config_composes() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=ablation_gap_magnitude", "hydra/launcher=slurm",
                                           "hydra.launcher.partition=cpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.cpus_per_task, launcher.gpus_per_node) == ("cpu", 2, 0)


@pytest.mark.slow
def test_every_ablation_sweep_validates() -> None:
    assert all(run_ablations.check_sweep(name, []) >= 1 for name in run_ablations.ABLATIONS)


def test_stale_results_schema_is_a_clear_error(tmp_path: Path, capsys, monkeypatch) -> None:
    job = tmp_path / "ablation_resampling" / "world=gmm_1d"
    job.mkdir(parents=True)
    (job / "results.json").write_text(json.dumps({"schema_version": 0, "experiment": "ablation_resampling"}))
    code, out = multirun(["experiment=ablation_resampling", f"hydra.sweep.dir={job.parent}", "logger=none",
                          "world=gmm_1d"], capsys, monkeypatch)
    assert code == 2 and "has results schema_version=0, this w2sd reads 1; re-run" in out
    with pytest.raises(ConfigError, match="schema_version=0"):
        load_sweep(tmp_path, "ablation_resampling")


@pytest.mark.parametrize("args, message", [
    # a digits study: job #0 passes the study's own validation, job #1 is refused, and nothing has run
    (["experiment=digits_dataset_gap", "samples_per_seed=50,1"],
     "error: samples_per_seed=1 must be >= 2 (sweep job #1 of 2: "),
    # generation: job #0's inputs are checked before anything is made (from an empty folder its prompts are missing)
    (["experiment=sd15_cfg", "seed=0,1"], "does not exist; set ++prompts.file="),
])
def test_digits_and_generation_sweeps_are_validated_before_their_first_job(args: list[str], message: str,
                                                                           tmp_path: Path, capsys,
                                                                           monkeypatch) -> None:
    """No hydra.* override: these reached Hydra's `HydraConfig was not set` crash before issue 20."""
    monkeypatch.delenv("W2SD_PROMPTS", raising=False)  # the prompts must be missing, wherever the caller keeps them
    code, out, err = run_here(["-m", *args, "logger=none"], capsys, monkeypatch, cwd=tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err[-2000:]
    assert "sweep job #" in lines[0] and not (tmp_path / "outputs").exists()
