# Every experiment config composes, names its results folder after itself and passes its own validation.
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from w2sd.runner import build_experiment
from w2sd.validation import ConfigError

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "conf" / "experiment").glob("*.yaml"))
# Inputs a fresh checkout may lack (downloaded prompt sets, Hub weights, a generation run to score): the only
# refusals allowed (a table names a block's keys as typed: blocks.<block>.set.<key>).
EXTERNAL_INPUT = re.compile(r"^(blocks\.\w+\.set\.)?(prompts\.file=\S+ does not exist; |run_dir=null; "
                            r"|gap\.models\.[\w.]+: model '[^']+' is not in the HF cache )")


def test_experiment_list_is_not_empty() -> None:
    assert {"toy_gmm", "toy_gmm_2d", "evaluate"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_validates(name: str, compose_config) -> None:
    cfg = compose_config([f"experiment={name}"])
    OmegaConf.resolve(cfg)
    assert cfg.name == name, f"{name}.yaml must set name: {name} (results/<name>/ and the tables use it)"
    experiment = build_experiment(cfg)
    assert f"{type(experiment).__module__}.{type(experiment).__qualname__}" == cfg.task
    try:
        experiment.validate()  # every range/choice/consistency check of the shipped values
    except ConfigError as err:
        assert EXTERNAL_INPUT.match(str(err)), f"{name}: shipped config refused: {err}"


def test_a_broken_value_in_a_shipped_config_is_refused(compose_config) -> None:
    """The check above can fail: a shipped toy config with one out-of-range value does not validate."""
    experiment = build_experiment(compose_config(["experiment=toy_gmm", "sampler.T=0"]))
    with pytest.raises(ConfigError):
        experiment.validate()
