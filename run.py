# Command-line entry point: `python run.py experiment=<name> [key=value ...]` (Hydra; `-m` for sweeps).
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from w2sd.lifeline import die_with_parent, parent_env
from w2sd.runner import ResultsNotSaved, run_experiment
from w2sd.validation import ConfigError


def _remove_if_empty(path: Path) -> None:
    """Hydra creates the run folder before the task can validate; a rejected run must not leave it behind."""
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def _fail(message: str, code: int) -> None:
    print(f"error: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    die_with_parent()  # a joblib sweep worker stops when the `run.py -m` process that started it is killed
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_experiment(cfg, run_dir)
    except (ConfigError, OmegaConfBaseException) as err:
        _remove_if_empty(run_dir)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            _remove_if_empty(run_dir.parent)  # the sweep folder, if this was its first job
        _fail(str(err) or type(err).__name__, 2)
    except ResultsNotSaved as err:
        _fail(str(err), 1)


if __name__ == "__main__":
    die_with_parent()  # started by `python -m toy.run_ablations`: stop when it is killed
    os.environ.update(parent_env())  # ... and so do the joblib workers this process starts
    main()
