# The experiment contract the runner drives: validate → setup → train → sample → evaluate → plot.
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


@dataclass
class RunResult:
    """What an experiment hands back to the runner; the runner turns it into results.json and W&B logs.

    metrics: `metrics[method][metric]` scalars (the printed table); lists and dicts may sit beside the scalars.
    nfe / wall_time_s: per method. figures: name → PNG path inside the run directory. extra: anything else
    JSON-able worth keeping (diagnostic curves, checkpoint hashes). tables: name → (columns, rows) and
    images: name → [(path, caption)] go to W&B only (sample tables, image grids).
    """

    metrics: dict[str, dict[str, Any]]
    nfe: dict[str, int] = field(default_factory=dict)
    wall_time_s: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, tuple[list[str], list[list[Any]]]] = field(default_factory=dict)
    images: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)


class Experiment:
    """Subclasses implement `validate` (raise ConfigError before any work) and `run`; `run` calls the stages.

    Stages are plain methods so a notebook can drive them one at a time; `run_dir` exists and is empty of
    this run's outputs when `run` is called; files written there should go through w2sd.results' atomic writers.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def validate(self) -> None:
        raise NotImplementedError

    def run(self, run_dir: Path) -> RunResult:
        raise NotImplementedError

    def wandb_tags(self) -> list[str]:
        return list(self.cfg.get("tags") or [])
