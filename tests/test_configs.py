# Every experiment config composes, resolves and names an importable Experiment class.
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from w2sd.runner import build_experiment

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "experiment").glob("*.yaml"))


def test_experiment_list_is_not_empty() -> None:
    assert {"toy_gmm", "toy_gmm_2d"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_composes(name: str, compose_config) -> None:
    cfg = compose_config([f"experiment={name}"])
    OmegaConf.resolve(cfg)
    assert cfg.name != "unnamed", f"{name} must set `name`"
    experiment = build_experiment(cfg)
    assert experiment.cfg is cfg
