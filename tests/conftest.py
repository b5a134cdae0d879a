# Shared test setup: offline environment, Hydra config composition helper.
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def compose_config():
    """compose_config(overrides) → resolved DictConfig of conf/config.yaml, as run.py would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    def _compose(overrides: list[str]):
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
            cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
        OmegaConf.set_readonly(cfg.hydra, False)
        with open_dict(cfg):
            cfg.hydra.runtime.cwd = str(ROOT)
            cfg.hydra.runtime.output_dir = str(ROOT / "outputs" / "compose-test")
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as in run.py: the task sees the config without the hydra node
        return cfg

    yield _compose
    GlobalHydra.instance().clear()
