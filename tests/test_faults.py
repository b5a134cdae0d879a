# Faults a careless or hostile user causes (issue 9): bad input, shared and killed runs, damaged files, permissions.
"""Each test names the numbered case of issue 9 it checks; docs/guarantees.md lists them. Runs go through the real
entry point: `run.py` in this process (imports paid once) or, where a process must die or lose rights, a child."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from in_process import run_here

ROOT = Path(__file__).resolve().parent.parent
TOY = ["experiment=toy_gmm", "logger=none", "num_samples=200", "diagnostic_samples=50", "figures=false"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    return lines[0]


# -- 3, 4: unknown keys and wrong types stop before any work and leave no run folder -------------------------------
TOY_BAD = [
    ("+sampler.lamda=3", "sampler.lamda=3 is not a known key of sampler; did you mean sampler.lam?"),  # case 3
    ("+model.hiden=64", "model.hiden=64 is not a known key of model; did you mean model.hidden?"),
    ("+num_sample=3", "num_sample=3 is not a key of any config under"),  # a top-level typo, otherwise ignored
    ("+num_sample=3", "did you mean num_samples?"),
    ("methods.autoguidance.w=abc", "methods.autoguidance.w='abc' must be a number"),  # case 4 from here on
    ("world.weak_weights=[a,b]", "world.weak_weights=['a', 'b'] must be a list of numbers"),
    ("world.weak_weights=0.5", "world.weak_weights=0.5 must be a list of numbers"),
    ("world.weak_weights=null", "world.weak_weights=null must be a list of numbers"),
    ("world.std=abc", "world.std='abc' must be a number"),
    ("seed=abc", "seed='abc' must be an integer"),
    ("sampler.inversion_noise=abc", "sampler.inversion_noise='abc' must be a number"),
    # issue 20: these ran to rc 0 with `null` in results.json, or were refused only after the run folder existed,
    # or named another key than the one typed, or were Hydra's own multi-line message
    ("sampler.inversion_noise=nan", "sampler.inversion_noise=nan must be a finite number"),
    ("sampler.inversion_noise=inf", "sampler.inversion_noise=inf must be a finite number"),
    ("methods.autoguidance.w=nan", "methods.autoguidance.w=nan must be a finite number"),
    ("sampler.reflections_per_step=0", "sampler.reflections_per_step=0 must be an integer >= 1"),
    ("sampler.inversion_noise=-0.5", "sampler.inversion_noise=-0.5 must be a number >= 0"),
    ("sampler.inversion=bogus", "sampler.inversion='bogus' must be one of ['exact', 'official']"),
    ("world.std=nan", "world.std=nan must be a finite number"),
    ("world.std=0", "world.std=0 must be a number > 0"),
    ("sampler.lamda=3", "sampler.lamda=3 is not a key of the composed config; did you mean sampler.lam?"),
    ("+methods.w2sd.reflections_per_step=0", "methods.w2sd.reflections_per_step=0 must be an integer >= 1"),
]
GENERATION_BAD = [
    ("prompts.limit=-1", "prompts.limit=-1 must be an integer >= 1"),  # case 3
    ("pipeline.height=abc", "pipeline.height='abc' must be an integer"),  # case 4 from here on
    ("pipeline.height=33", "pipeline.height=33 must be a multiple of 8"),
    ("pipeline.height=0", "pipeline.height=0 must be an integer >= 8"),
    ("pipeline.batch_size=0", "pipeline.batch_size=0 must be an integer >= 1"),
    ("gap.settings.strong.cfg=abc", "gap.settings.strong.cfg='abc' must be a number"),
]


@pytest.mark.parametrize("experiment, override, message",
                         [("toy_gmm", o, m) for o, m in TOY_BAD] + [("sd15_cfg", o, m) for o, m in GENERATION_BAD])
def test_bad_key_or_type_is_one_line_before_any_work(experiment: str, override: str, message: str, tmp_path: Path,
                                                     capsys, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    args = [*TOY, override] if experiment == "toy_gmm" else [f"experiment={experiment}", "logger=none", override]
    code, out, err = run_here([*args, f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
    assert code == 2 and message in one_error_line(err)
    assert "nfe" not in out  # no metrics table: nothing was sampled
    assert not run_dir.exists()


def test_truncated_lora_file_is_rejected_before_loading(tmp_path: Path, capsys, monkeypatch) -> None:
    """Case 4: a LoRA cut short by a failed copy fails at validation, not minutes later inside diffusers."""
    from safetensors.torch import load_file, save_file

    lora = tmp_path / "style.safetensors"
    save_file({"unet.lora_A.weight": torch.zeros(64, 64)}, str(lora))
    lora.write_bytes(lora.read_bytes()[:-100])
    with pytest.raises(Exception):  # noqa: B017 - the safetensors reader itself rejects the file
        load_file(str(lora))
    (tmp_path / "sdxl").mkdir()
    run_dir = tmp_path / "run"
    code, _, err = run_here(["experiment=sdxl_lora_xlmoreart", "logger=none", f"hydra.run.dir={run_dir}",
                             f"gap.models.base.path={tmp_path / 'sdxl'}", f"gap.models.base.loras.style.path={lora}"],
                            capsys, monkeypatch)
    assert code == 2 and f"gap.models.base.loras.style.path={lora} is truncated" in one_error_line(err)
    assert not run_dir.exists()


# -- 2: every run gets its own folder; one live run per folder -----------------------------------------------------
def test_runs_composed_in_the_same_second_get_distinct_folders() -> None:
    from hydra import compose, initialize_config_dir

    import w2sd.runner  # noqa: F401 - what run.py imports before Hydra composes (resolvers included)

    pairs = []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        while len(pairs) < 3:
            start = time.time()
            a, b = (str(compose("config", ["experiment=toy_gmm", "paths.root_dir=/r"],
                                return_hydra_config=True).hydra.run.dir) for _ in range(2))
            if int(start) == int(time.time()):  # both inside one wall-clock second, as two runs started together
                pairs.append((a, b))
    assert all(a.startswith("/r/outputs/toy_gmm/runs/") and a != b for a, b in pairs), pairs


@pytest.mark.slow
def test_second_live_run_on_a_folder_is_refused_and_a_killed_run_frees_it(tmp_path: Path, capsys,
                                                                            monkeypatch) -> None:
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "run.py", "experiment=toy_gmm", "logger=none", "num_samples=200000",
                              "figures=false", f"hydra.run.dir={run_dir}"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not run_dir.is_dir() and time.time() < deadline:
            time.sleep(0.1)
        deadline = time.time() + 10
        while not (run_dir / ".w2sd.lock").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, "the first run ended too early for this test"
        code, _, err = run_here([*TOY, f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
        assert code == 2 and f"is in use by another live run (pid {first.pid})" in one_error_line(err)
        monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP rank Lightning re-launched is part of the live run
        code, _, err = run_here([*TOY, f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
        monkeypatch.delenv("LOCAL_RANK")
        assert code == 0, err
    finally:
        first.kill()
        first.wait()
    code, out, _ = run_here([*TOY, f"hydra.run.dir={run_dir}"], capsys, monkeypatch)  # the kernel dropped the lock
    assert code == 0 and json.loads((run_dir / "results.json").read_text())["config"]["num_samples"] == 200


# -- 5: damaged caches are set aside and recomputed; damaged results name the file and the fix ---------------------
def test_truncated_cached_checkpoint_is_quarantined_and_retrained(tmp_path: Path, caplog) -> None:
    from toy.gmm import GaussianMixture
    from toy.trained import train_eps_mlp
    from w2sd.schedule import make_schedule

    mixture = GaussianMixture.build([[-4.0], [4.0]], 0.87, [0.3, 0.7], name="weights")
    schedule = make_schedule(10)
    settings = dict(hidden=8, layers=1, train_samples=256, max_steps=4, batch_size=64, lr=1e-3, seed=0,
                    cache_dir=tmp_path)
    torch.manual_seed(0)  # the MLP's initial weights come from the global generator
    net, info = train_eps_mlp(mixture, schedule, **settings)
    path = tmp_path / info["checkpoint"]  # results record the file name, not the local cache folder
    damaged = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(damaged)
    torch.manual_seed(0)
    with caplog.at_level("WARNING"):
        again, info_again = train_eps_mlp(mixture, schedule, **settings)
    assert str(path) in caplog.text and info_again["cached"] is False
    assert (tmp_path / f"{path.name}.corrupt").read_bytes() == damaged  # set aside, not deleted
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert train_eps_mlp(mixture, schedule, **settings)[1]["cached"] is True  # the recomputed file is good


def test_corrupt_results_json_with_skip_if_done_names_file_and_fix(tmp_path: Path, capsys, monkeypatch) -> None:
    job = tmp_path / "world=gmm_1d"
    job.mkdir()
    (job / "results.json").write_text('{"schema_version": 1, "experim')  # cut off mid-write by another tool
    code, out, err = run_here(["-m", "experiment=ablation_resampling", f"hydra.sweep.dir={tmp_path}", "logger=none",
                               "world=gmm_1d"], capsys, monkeypatch)
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in out + err
    assert f"{job / 'results.json'} is not valid JSON" in errors[0] and "delete it" in errors[0]


# -- 6: a folder we cannot write is refused before work; a failing final write still shows and keeps the results ---
def _feel_permissions() -> None:
    """In the child: drop root's permission override (CAP_DAC_OVERRIDE/READ_SEARCH) so a 0555 folder is read-only."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_read_only_run_dir_is_refused_before_work(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o555)
    try:
        proc = subprocess.run([sys.executable, "run.py", *TOY, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=300, preexec_fn=_feel_permissions)
    finally:
        run_dir.chmod(0o755)
    assert proc.returncode == 2 and f"cannot write to the run folder {run_dir}" in one_error_line(proc.stderr)
    assert "nfe" not in proc.stdout and not any(run_dir.iterdir())


def test_failed_final_write_prints_table_and_rescues_results(tmp_path: Path, capsys, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "results.json").mkdir(parents=True)  # the final rename cannot replace a folder, even as root
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code, out, err = run_here([*TOY, f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
    line = one_error_line(err)
    rescued = list((tmp_path / "tmp").glob("w2sd-rescued-toy_gmm-*.json"))
    assert code == 1 and len(rescued) == 1 and f"saved to {rescued[0]}" in line
    results = json.loads(rescued[0].read_text())
    assert set(results["metrics"]) == {"ideal", "weak", "strong", "w2sd", "s2wd", "autoguidance", "resampling"}
    table = out[out.index("toy_gmm — results"):]
    for method, row in results["metrics"].items():  # the printed table shows the rescued numbers
        assert any(r.split()[:1] == [method] and f"{row['target_mode_weight']:.4f}" in r for r in table.splitlines())


# -- 7: killing a sweep driver stops its children -----------------------------------------------------------------
def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            running.add(pid)
    return running


def kill_and_watch(command: list[str], started: Callable[[], bool]) -> set[int]:
    """Start `command`, wait until `started()`, SIGKILL only the driver; returns its descendants alive 15 s later."""
    proc = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: set[int] = set()
    try:
        deadline = time.time() + 240
        while not started() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None and started(), "the sweep did not start a job in time"
        children = descendants(proc.pid)
        assert children
        proc.kill()
        proc.wait()
        deadline = time.time() + 15
        while alive(children) and time.time() < deadline:
            time.sleep(0.2)
        return alive(children)
    finally:
        for pid in alive(children):  # never leave a stray process behind, whatever the outcome
            os.kill(pid, signal.SIGKILL)


LONG_JOBS = ["logger=none", "num_samples=50000", "num_seeds=5", "ablation.weak_bias_ratio=0,1,2,3"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killing_a_joblib_sweep_parent_stops_its_workers(tmp_path: Path) -> None:
    command = [sys.executable, "run.py", "-m", "experiment=ablation_gap_magnitude", f"hydra.sweep.dir={tmp_path}",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *LONG_JOBS]
    assert kill_and_watch(command, lambda: any(p.is_dir() for p in tmp_path.glob("ablation*"))) == set()
    assert not list(tmp_path.glob("*/results.json"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killing_run_ablations_stops_its_sweep(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "toy.run_ablations", "--only", "ablation_gap_magnitude", "--root", str(tmp_path),
               "--logger", "none", "--jobs", "1", *LONG_JOBS[1:]]
    folder = tmp_path / "ablation_gap_magnitude"
    assert kill_and_watch(command, lambda: any(p.is_dir() for p in folder.glob("ablation*"))) == set()
    assert not list(folder.glob("*/results.json"))


# -- 8: files are written with the process umask ------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(umask: int, mode: int, tmp_path: Path) -> None:
    from w2sd.results import atomic_write_bytes, atomic_write_json

    old = os.umask(umask)
    try:
        paths = [atomic_write_json(tmp_path / "results.json", {"a": 1}), atomic_write_bytes(tmp_path / "x.png", b"1")]
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [mode, mode]
