# Command-line entry point: `python run.py experiment=<name> [key=value ...]` (Hydra; `-m` for sweeps).
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from w2sd.lifeline import die_with_parent, parent_env
from w2sd.runner import ResultsNotSaved, composition_error, exit_with_error, run_experiment
from w2sd.validation import ConfigError


def _remove_if_empty(path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


_TASK_STARTED = False  # set once Hydra has composed the config and called the task


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    global _TASK_STARTED
    _TASK_STARTED = True
    die_with_parent()  # a joblib sweep worker stops when the `run.py -m` process that started it is killed
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_experiment(cfg, run_dir)
    except (ConfigError, OmegaConfBaseException) as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:  # Hydra made the job's folder before the job could validate
            _remove_if_empty(run_dir)
            _remove_if_empty(run_dir.parent)  # the sweep folder, if this was its first job
        exit_with_error(str(err) or type(err).__name__, 2)
    except ResultsNotSaved as err:
        exit_with_error(str(err), 1)


def cli() -> None:
    """`main` with Hydra's own composition errors (a typo, an unknown config) as one `error:` line, exit code 2.
    Hydra prints those itself unless HYDRA_FULL_ERROR=1 makes it re-raise them, so it is set for the call."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except HydraException as err:
        if _TASK_STARTED:  # raised by the task itself: not a composition error
            raise
        overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
        exit_with_error(composition_error(err, overrides), 2)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


if __name__ == "__main__":
    die_with_parent()  # started by `python -m toy.run_ablations`: stop when it is killed
    os.environ.update(parent_env())  # ... and so do the joblib workers this process starts
    cli()
    # the process is ending: spare the interpreter's shutdown collections a walk over every torch object (half a
    # second); the memory goes back to the OS either way
    gc.freeze()
