# Command-line entry point: `python run.py experiment=<name> [key=value ...]` (Hydra; `-m` for sweeps).
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from w2sd.runner import run_experiment
from w2sd.validation import ConfigError


def _remove_if_empty(path: Path) -> None:
    """Hydra creates the run folder before we can validate; a rejected run must not leave it behind."""
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_experiment(cfg, run_dir)
    except (ConfigError, OmegaConfBaseException) as err:
        _remove_if_empty(run_dir)
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
