# Shared helpers of the figure scripts: locating stored results and naming the command that makes them.
from __future__ import annotations

from pathlib import Path

from w2sd.results import load_results
from w2sd.validation import ConfigError

RESULTS_ROOT = Path(__file__).resolve().parent.parent / "results"


def publish_command(experiment: str, extra: str = "") -> str:
    """The command that (re)creates results/<experiment>/results.json."""
    suffix = f" {extra}" if extra else ""
    return f"python run.py experiment={experiment} hydra.run.dir=results/{experiment} logger=none{suffix}"


def require_results(results_root: Path, experiment: str, command: str | None = None) -> dict:
    path = Path(results_root) / experiment / "results.json"
    if not path.exists():
        raise ConfigError(f"missing {path}; produce it with `{command or publish_command(experiment)}`")
    return load_results(path)
