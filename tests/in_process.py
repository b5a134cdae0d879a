# `python run.py ARGS` inside the test process (imports paid once), for tests that run many short commands.
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_here(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
             cwd: Path = ROOT) -> tuple[int, str, str]:
    """Run run.py's main block with `args` from `cwd` (where default outputs/ lands); returns (exit code, stdout,
    stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["run.py", *args])
    monkeypatch.setenv("W2SD_SWEEP_PARENT", "")  # run.py names itself the parent of its workers; undo afterwards
    code = 0
    try:
        runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
