# Issue 20: results.json says which code made it; skip_if_done re-runs other code's results; no local paths stored.
from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import diffusers
import torch
import transformers
from in_process import run_here

from w2sd import check_stored

ROOT = Path(__file__).resolve().parent.parent
TOY = ["experiment=toy_gmm", "logger=none", "num_samples=200", "diagnostic_samples=50", "figures=false",
       "sampler.T=10"]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_results_record_commit_dirty_flag_versions_and_command(tmp_path: Path, capsys, monkeypatch) -> None:
    args = [*TOY, f"hydra.run.dir={tmp_path / 'run'}"]
    code, _, err = run_here(args, capsys, monkeypatch)
    assert code == 0, err
    env = json.loads((tmp_path / "run" / "results.json").read_text())["environment"]
    assert env["git_commit"] == git("rev-parse", "HEAD")
    assert env["git_dirty"] is bool(git("status", "--porcelain", "--untracked-files=no"))
    assert (env["torch"], env["diffusers"], env["transformers"]) == \
        (torch.__version__, diffusers.__version__, transformers.__version__)
    assert env["command"] == shlex.join(["python", "run.py", *args])
    assert re.fullmatch(r"[0-9a-f]{16}", env["code_hash"])


def test_skip_if_done_reruns_a_result_made_by_other_code(tmp_path: Path, capsys, monkeypatch) -> None:
    """skip_if_done used to key on the config alone: after a code change a stale result was reused silently."""
    run_dir = tmp_path / "run"
    args = [*TOY, "skip_if_done=true", f"hydra.run.dir={run_dir}"]
    assert run_here(args, capsys, monkeypatch)[0] == 0
    code, out, _ = run_here(args, capsys, monkeypatch)
    assert code == 0 and "skipped: " in out and "made by this code" in out  # same config, same code: kept
    stored = json.loads((run_dir / "results.json").read_text())
    current = stored["environment"]["code_hash"]
    stored["environment"]["code_hash"] = "0" * 16  # as written by another version of the sources
    stored["metrics"]["w2sd"]["w1"] = -1.0          # a number the re-run must replace
    (run_dir / "results.json").write_text(json.dumps(stored))
    code, out, _ = run_here(args, capsys, monkeypatch)
    rerun = [line for line in out.splitlines() if line.startswith("re-running: ")]
    assert code == 0 and len(rerun) == 1 and "made by other code (code_hash 0000000000000000" in rerun[0]
    fresh = json.loads((run_dir / "results.json").read_text())
    assert fresh["environment"]["code_hash"] == current and fresh["metrics"]["w2sd"]["w1"] > 0


def test_stored_results_hold_no_absolute_local_paths() -> None:
    absolute = re.compile(r"^(/|~|[A-Za-z]:\\)")
    found = []

    def walk(value: object, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for item in value:
                walk(item, where)
        elif isinstance(value, str) and absolute.match(value):
            found.append(f"{where}: {value}")

    files = sorted((ROOT / "results").rglob("*.json"))
    assert files
    for path in files:
        walk(json.loads(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))
    assert found == []


def test_check_stored_reports_results_made_by_other_code(tmp_path: Path, capsys, monkeypatch) -> None:
    root = tmp_path / "results"
    for name in ("current", "other", "old"):
        code, _, err = run_here([*TOY, f"hydra.run.dir={root / name}"], capsys, monkeypatch)
        assert code == 0, err
    for name, change in (("other", {"code_hash": "f" * 16}), ("old", None)):
        path = root / name / "results.json"
        stored = json.loads(path.read_text())
        if change is None:
            del stored["environment"]["code_hash"]  # results written before they recorded their code
        else:
            stored["environment"].update(change)
        path.write_text(json.dumps(stored))
    stale = check_stored.stale_results(root)
    assert [run for run, _ in stale] == ["results/old", "results/other"]
    assert "records no code fingerprint" in stale[0][1] and "made by other code" in stale[1][1]


def test_check_stored_covers_the_digits_studies() -> None:
    stored = {p.parent.name for p in (ROOT / "results").glob("*/results.json") if p.parent.name.startswith("digits")}
    assert stored and {Path(run).name for run in check_stored.DIGITS} == stored
