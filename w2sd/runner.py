# Drives one experiment from a composed Hydra config to results.json, a printed table and a W&B run.
from __future__ import annotations

import copy
import datetime as dt
import difflib
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

import w2sd
from w2sd.config_schema import CONF_DIR, check_config
from w2sd.experiment import Experiment, RunResult
from w2sd.provenance import provenance, same_code
from w2sd.report import text_table
from w2sd.results import RESULTS_SCHEMA_VERSION, atomic_write_json, config_hash, load_results
from w2sd.run_dir import RunLock, check_writable, rescue_path
from w2sd.tracking import start_run
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


def _task_config(config: DictConfig) -> DictConfig:
    """The config as Hydra hands it to the task: without its `hydra` node."""
    task_cfg = copy.deepcopy(config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def sweep_job_overrides(config: DictConfig) -> list[list[str]] | None:
    """Every job of a multirun as its override list, expanded as Hydra's basic sweeper does (the config's
    hydra.sweeper.params, then the command line's overrides); None for another sweeper, whose jobs are validated
    one by one as they start."""
    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    params += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return BasicSweeper.split_arguments(parser.parse_overrides(params), None)[0]


def validate_sweep(config: DictConfig) -> int:
    """Compose every job of the multirun `config` as its launcher will and validate it, and check the sweep folder
    can be written: a bad job stops the whole sweep before the first job runs. Returns the number of jobs checked."""
    jobs = sweep_job_overrides(config)
    check_writable(Path(str(config.hydra.sweep.dir)))  # resolved once here: the run id is cached for every job
    if jobs is None:
        return 0
    if not jobs:  # an empty range or choice: Hydra itself would launch nothing and say nothing
        raise ConfigError(f"the sweep {' '.join(config.hydra.overrides.task)} has no jobs (an empty range or "
                          "choice?); give every swept key at least one value")
    loader = GlobalHydra.instance().config_loader()
    try:
        for num, job in enumerate(jobs):
            shown = " ".join(job) or "(no overrides)"
            job_cfg = loader.load_sweep_config(config, list(job))
            HydraConfig.instance().set_config(job_cfg)  # paths.* interpolate ${hydra:runtime.cwd}
            try:
                validated_experiment(_task_config(job_cfg))
            except (ConfigError, OmegaConfBaseException) as err:
                raise ConfigError(f"{_first_line(err)} (sweep job #{num} of {len(jobs)}: {shown}; no job was run)") \
                    from err
    finally:
        HydraConfig.instance().set_config(config)
    return len(jobs)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _known_keys(overrides: list[str], at: str) -> list[str]:
    """Dotted keys one level below `at` ('' for the top level) in the config composed from `overrides`."""
    try:
        if GlobalHydra.instance().is_initialized():
            cfg = GlobalHydra.instance().config_loader().load_configuration("config", overrides, RunMode.RUN)
        else:  # after the app ended: Hydra has cleared its state
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = GlobalHydra.instance().config_loader().load_configuration("config", overrides, RunMode.RUN)
        node = OmegaConf.select(cfg, at) if at else cfg
    except Exception:  # noqa: BLE001 - only a hint: without it the message still names the key
        return []
    return [f"{at}.{k}" if at else str(k) for k in node] if isinstance(node, DictConfig) else []


def composition_error(err: BaseException, overrides: list[str]) -> str:
    """Hydra's own composition error (a plain typo such as `sampler.lamda=3`, an unknown config such as
    `experiment=toy_gmn`, an override it cannot parse) as one line naming what was typed, with a did-you-mean."""
    text = str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, name = err.missing_cfg_file.rsplit("/", 1)
        options = [str(o) for o in (err.options or [])]
        close = difflib.get_close_matches(name, options, n=1)
        hint = f"did you mean {group}={close[0]}? " if close else ""
        return f"{group}={name} is not a config under conf/{group}/; {hint}(available: {', '.join(options)})"
    match = re.search(r"Could not (override|delete from config)\W+'?([\w.]+)'?", text)
    if match:
        key = match.group(2)
        typed = next((o for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), key)
        rest = [o for o in overrides if o != typed]
        parent = key.rpartition(".")[0]
        known = _known_keys(rest, parent)
        if known:
            close = difflib.get_close_matches(key, known, n=1)
        else:  # the group itself is mistyped (`samplr.lam`): match its first part, keep the rest
            head, _, tail = key.partition(".")
            close = [f"{c}.{tail}" if tail else c for c in difflib.get_close_matches(head, _known_keys(rest, ""), n=1)]
        hint = f"; did you mean {close[0]}?" if close else ""
        if match.group(1) == "delete from config":
            return f"{typed} cannot delete {key}: it is not set{hint}"
        return f"{typed} is not a key of the composed config{hint} (a new key needs a +: +{typed.lstrip('+')})"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    for override in overrides:  # an override Hydra cannot parse (OverrideParseException or a bare HydraException)
        try:
            OverridesParser.create().parse_override(override)
        except HydraException as bad:
            return (f"cannot parse the override {override!r}: {str(bad).strip().splitlines()[0]} (override syntax: "
                    "https://hydra.cc/docs/advanced/override_grammar/basic/)")
    return first


class CheckBeforeRunDir(Callback):
    """Hydra callback (conf/hydra/default.yaml): a single run is validated, and its folder checked for writing,
    before Hydra creates that folder, so a rejected run leaves nothing behind; a multirun validates every one of its
    jobs before the sweep folder or the first job exists."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # paths.* interpolate ${hydra:runtime.cwd}
        try:
            validated_experiment(_task_config(config))
            check_writable(Path(str(config.hydra.run.dir)))
        except (ConfigError, OmegaConfBaseException) as err:
            exit_with_error(str(err) or type(err).__name__)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # before the sweeper reads hydra.sweep.dir, whose default (paths.log_dir) needs ${hydra:runtime.cwd}
        HydraConfig.instance().set_config(config)
        try:
            validate_sweep(config)
        except HydraException as err:
            exit_with_error(composition_error(err, list(config.hydra.overrides.task)))
        except (ConfigError, OmegaConfBaseException) as err:
            exit_with_error(str(err) or type(err).__name__)


class ResultsNotSaved(RuntimeError):
    """The run finished but results.json could not be written to the run folder (they went to a rescue file)."""


def finished_run(run_dir: Path, chash: str) -> dict | None:
    """The stored results of an identical, completed run in `run_dir` made by this code, if any (used to skip sweep
    jobs). Results of the same config made by other code are re-run, and a line says so."""
    path = run_dir / "results.json"
    if not path.exists():
        return None
    data = load_results(path)
    if data.get("config_hash") != chash:
        return None
    current, why = same_code(data.get("environment"))
    if not current:
        print(f"re-running: {path} holds results for config {chash}, but {why}")
        return None
    return data


def run_experiment(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate, lock the run folder, start W&B beside the run, run, print the table, write results.json atomically,
    then log the results to W&B (a run that raised is closed there as failed).
    Returns the results. If results.json cannot be written, they go to a rescue file named in ResultsNotSaved."""
    experiment = validated_experiment(cfg)
    semantic = semantic_config(cfg)
    chash = config_hash(semantic)
    with RunLock(run_dir):
        if cfg.get("skip_if_done", False):
            done = finished_run(run_dir, chash)
            if done is not None:
                print(f"skipped: {run_dir} already holds results for config {chash}, made by this code")
                return done
        load_at_start = os.getloadavg()[0]  # with cpus: whether the stored wall times had the machine to themselves
        with start_run(OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None, run_dir,
                       name=f"{cfg.name}-{chash[:8]}", config=semantic, tags=experiment.wandb_tags(),
                       group=cfg.get("group")) as tracked:
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
                                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                "cpus": os.cpu_count(), "load_average_at_start": round(load_at_start, 2),
                                **provenance()},
            }
            # the table first: a failing write below must not hide what the run measured
            print(f"\n{cfg.name} — results ({run_dir}/results.json)\n")
            print(text_table(result.metrics))
            print(f"\nfigures: {', '.join(str(p) for p in result.figures.values()) or 'none'}")
            try:
                atomic_write_json(run_dir / "results.json", results)
            except OSError as err:
                rescued = atomic_write_json(rescue_path(str(cfg.name), chash), results)
                raise ResultsNotSaved(f"could not write {run_dir / 'results.json'} ({err.strerror or err}); the "
                                      f"results were saved to {rescued} instead: move that file there once the "
                                      "folder is writable") from err
            wandb_dir = tracked.finish(metrics=result.metrics, figures=result.figures, tables=result.tables,
                                       images=result.images)
    if wandb_dir is not None:
        print(f"W&B offline run: {wandb_dir}  (upload later with `wandb sync {wandb_dir}`)")
    print(f"total time: {total:.1f} s")
    return results
