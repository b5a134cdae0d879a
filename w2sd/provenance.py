# What made a result: the code (git commit, dirty tree, a fingerprint of the sources), package versions, command.
"""Recorded in every results.json under `environment` (w2sd/runner.py). `code_hash` is a sha256 over the source
files that compute results (w2sd/, toy/, experiments/ *.py), so it tells "same code" also without git and for a
dirty tree; `skip_if_done` and `python -m w2sd.check_stored` compare it with the running code's."""
from __future__ import annotations

import functools
import hashlib
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("w2sd", "toy", "experiments")  # what computes results; paper_figures/ and benchmarks/ only read them
PACKAGES = ("torch", "diffusers", "transformers")


@functools.cache
def code_hash(root: Path = ROOT) -> str:
    """Short sha256 over the relative path and bytes of every .py file under CODE_DIRS, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for d in CODE_DIRS for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages whose numerics matter (read from metadata: nothing is imported)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed, with the script named relative to the repository (no local absolute path)."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0])
        argv[0] = script.relative_to(ROOT).as_posix() if script.is_absolute() and script.is_relative_to(ROOT) \
            else script.name
    return shlex.join(["python", *argv])


def provenance() -> dict:
    """The `environment` fields that say which code made a result."""
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "code_hash": code_hash(), **package_versions(),
            "command": command_line()}


def same_code(environment: dict | None) -> tuple[bool, str]:
    """(whether a stored result's `environment` says it was made by the running code, the reason in words)."""
    stored = (environment or {}).get("code_hash")
    if stored is None:
        return False, "it records no code fingerprint (made before results recorded their code)"
    if stored != code_hash():
        commit = (environment or {}).get("git_commit")
        return False, (f"it was made by other code (code_hash {stored} != {code_hash()}"
                       + (f", commit {commit[:10]}" if commit else "") + ")")
    return True, f"it was made by this code (code_hash {stored})"
