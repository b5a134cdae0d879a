# Weights & Biases logging: offline by default, never required, never able to lose results already on disk.
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested config → {"sampler.T": 50, ...}, so W&B panels can filter on every key."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def log_run(
    logger_cfg: Mapping | None,
    run_dir: Path,
    *,
    name: str,
    config: Mapping,
    metrics: Mapping[str, Mapping[str, Any]],
    figures: Mapping[str, Path],
    tags: list[str],
    group: str | None = None,
    tables: Mapping[str, tuple[list[str], list[list[Any]]]] | None = None,
    images: Mapping[str, list[tuple[Path, str]]] | None = None,
) -> Path | None:
    """Log one finished run; returns the local W&B run folder, or None when logging is off or fails.

    `tables`: name → (columns, rows) logged as wandb.Table; `images`: name → [(path, caption)] logged as a list of
    wandb.Image (e.g. sample grids). Failures are reported and swallowed: results.json is already written.
    """
    if not logger_cfg or not logger_cfg.get("enabled", False):
        return None
    try:
        import wandb

        mode = os.environ.get("WANDB_MODE") or logger_cfg.get("mode", "offline")
        run = wandb.init(project=logger_cfg.get("project", "w2sd"), entity=logger_cfg.get("entity"),
                         dir=str(run_dir), mode=mode, name=name, group=group or logger_cfg.get("group"),
                         tags=tags, config=flatten(config), settings=wandb.Settings(console="off", silent=True))
        scalars = {f"{method}/{key}": value for method, row in metrics.items() for key, value in row.items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)}
        columns = sorted({k for row in metrics.values() for k, v in row.items() if isinstance(v, (int, float))})
        table = wandb.Table(columns=["method", *columns],
                            data=[[m, *(row.get(c) for c in columns)] for m, row in metrics.items()])
        payload: dict[str, Any] = {"results": table}
        payload.update({f"figures/{k}": wandb.Image(str(p)) for k, p in figures.items()})
        for key, (cols, rows) in (tables or {}).items():
            payload[f"tables/{key}"] = wandb.Table(columns=list(cols), data=[list(r) for r in rows])
        for key, items in (images or {}).items():
            payload[f"images/{key}"] = [wandb.Image(str(p), caption=c) for p, c in items]
        run.log(payload)
        run.summary.update(scalars)
        run_path = Path(run.dir).parent
        run.finish()
        return run_path
    except Exception as err:  # noqa: BLE001 - a tracking failure must never cost a finished run
        log.warning("W&B logging failed (%s: %s); results.json is unaffected", type(err).__name__, err)
        return None
