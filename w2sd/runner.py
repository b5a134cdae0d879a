# Drives one experiment from a composed Hydra config to results.json, a printed table and a W&B run.
from __future__ import annotations

import copy
import datetime as dt
import platform
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

import w2sd
from w2sd.config_schema import check_config
from w2sd.experiment import Experiment, RunResult
from w2sd.report import text_table
from w2sd.results import RESULTS_SCHEMA_VERSION, atomic_write_json, config_hash, load_results
from w2sd.run_dir import RunLock, check_writable, rescue_path
from w2sd.tracking import log_run
from w2sd.validation import ConfigError

# Keys that say where/how a run is stored or logged, not what it computes: left out of the config hash.
NON_SEMANTIC_KEYS = ("paths", "logger", "tags", "skip_if_done", "hydra")


def semantic_config(cfg: DictConfig) -> dict:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in resolved.items() if k not in NON_SEMANTIC_KEYS}


def build_experiment(cfg: DictConfig) -> Experiment:
    if cfg.get("task") is None:
        raise ConfigError("no experiment chosen; run e.g. `python run.py experiment=toy_gmm` "
                          "(see conf/experiment/ for the list)")
    try:
        cls = get_class(cfg.task)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"task={cfg.task!r} cannot be imported ({first}); check the experiment config") from err
    return cls(cfg)


def validated_experiment(cfg: DictConfig) -> Experiment:
    """Schema check of the shared groups, then the experiment's own checks: everything before any work."""
    check_config(cfg)
    experiment = build_experiment(cfg)
    experiment.validate()
    return experiment


def exit_with_error(message: str, code: int = 2) -> NoReturn:
    """The command line's way to fail: one `error:` line on stderr, no traceback."""
    print(f"error: {message.strip().splitlines()[0] if message.strip() else 'failed'}", file=sys.stderr)
    sys.exit(code)


class CheckBeforeRunDir(Callback):
    """Hydra callback (conf/hydra/default.yaml): a single run is validated, and its folder checked for writing,
    before Hydra creates that folder, so a rejected run leaves nothing behind. (Sweep jobs validate inside the job;
    run.py removes a rejected job's empty folder.)"""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # paths.* interpolate ${hydra:runtime.cwd}
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]  # as Hydra hands the config to the task
        try:
            validated_experiment(task_cfg)
            check_writable(Path(str(config.hydra.run.dir)))
        except (ConfigError, OmegaConfBaseException) as err:
            exit_with_error(str(err) or type(err).__name__)


class ResultsNotSaved(RuntimeError):
    """The run finished but results.json could not be written to the run folder (they went to a rescue file)."""


def finished_run(run_dir: Path, chash: str) -> dict | None:
    """The stored results of an identical, completed run in `run_dir`, if any (used to skip sweep jobs)."""
    path = run_dir / "results.json"
    if not path.exists():
        return None
    data = load_results(path)
    return data if data.get("config_hash") == chash else None


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate, lock the run folder, run, print the table, write results.json atomically, then log to W&B.
    Returns the results. If results.json cannot be written, they go to a rescue file named in ResultsNotSaved."""
    experiment = validated_experiment(cfg)
    semantic = semantic_config(cfg)
    chash = config_hash(semantic)
    with RunLock(run_dir):
        if cfg.get("skip_if_done", False):
            done = finished_run(run_dir, chash)
            if done is not None:
                print(f"skipped: {run_dir} already holds results for config {chash}")
                return done
        start = time.perf_counter()
        result: RunResult = experiment.run(run_dir)
        total = time.perf_counter() - start
        results = {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "experiment": cfg.name,
            "config_hash": chash,
            "config": semantic,
            "metrics": result.metrics,
            "nfe": result.nfe,
            "wall_time_s": result.wall_time_s,
            "total_time_s": total,
            "figures": {k: str(Path(p).relative_to(run_dir)) if Path(p).is_relative_to(run_dir) else str(p)
                        for k, p in result.figures.items()},
            "extra": result.extra,
            "environment": {"w2sd": w2sd.__version__, "python": platform.python_version(),
                            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        }
        # the table first: a failing write below must not hide what the run measured
        print(f"\n{cfg.name} — results ({run_dir}/results.json)\n")
        print(text_table(result.metrics))
        print(f"\nfigures: {', '.join(str(p) for p in result.figures.values()) or 'none'}")
        try:
            atomic_write_json(run_dir / "results.json", results)
        except OSError as err:
            rescued = atomic_write_json(rescue_path(str(cfg.name), chash), results)
            raise ResultsNotSaved(f"could not write {run_dir / 'results.json'} ({err.strerror or err}); the results "
                                  f"were saved to {rescued} instead: move that file there once the folder is "
                                  "writable") from err
        wandb_dir = log_run(OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None,
                            run_dir, name=f"{cfg.name}-{chash[:8]}", config=semantic, metrics=result.metrics,
                            figures=result.figures, tags=experiment.wandb_tags(), group=cfg.get("group"),
                            tables=result.tables, images=result.images)
    if wandb_dir is not None:
        print(f"W&B offline run: {wandb_dir}  (upload later with `wandb sync {wandb_dir}`)")
    print(f"total time: {total:.1f} s")
    return results
