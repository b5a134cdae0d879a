# Command-line entry point: `python run.py experiment=<name> [key=value ...]` (Hydra; `-m` for sweeps).
from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from w2sd.lifeline import die_with_parent, parent_env
from w2sd.runner import ResultsNotSaved, exit_with_error, run_experiment
from w2sd.validation import ConfigError


def _remove_if_empty(path: Path) -> None:
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
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


if __name__ == "__main__":
    die_with_parent()  # started by `python -m toy.run_ablations`: stop when it is killed
    os.environ.update(parent_env())  # ... and so do the joblib workers this process starts
    main()
