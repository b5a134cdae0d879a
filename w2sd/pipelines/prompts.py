# Prompt sets from CSV files (DrawBench, Pick-a-Pic, GenEval, VBench lists): one row per prompt, seed = its index.
from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from w2sd.validation import ConfigError


@dataclass  # not frozen: Lightning rebuilds batch dataclasses when moving them to the device
class PromptItem:
    index: int                       # position in the prompt set after filtering; also the sample's seed offset
    prompt: str
    refined: str | None = None       # LLM-refined variant (the prompt gap's strong condition)
    control_image: str | None = None  # per-prompt ControlNet input (path)
    ip_adapter_image: str | None = None  # per-prompt IP-Adapter image prompt (path)


def load_prompts(cfg: Mapping) -> list[PromptItem]:
    """Read `cfg.file` (CSV with a header), column `cfg.column`; empty prompts dropped when `skip_empty`
    (the paper's Pick-a-Pic set is the first 100 non-empty captions), then the first `limit` rows kept."""
    file = Path(str(cfg.get("file")))
    if not file.is_file():
        raise ConfigError(f"prompts.file={file} does not exist; point prompts.file (or paths.prompts_dir) at the CSV")
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows, header = list(reader), list(reader.fieldnames or [])
    except (csv.Error, UnicodeDecodeError) as err:
        raise ConfigError(f"prompts.file={file} is not a readable UTF-8 CSV ({err}); fix or re-export it") from err
    columns = {"column": cfg.get("column"), "refined_column": cfg.get("refined_column"),
               "control_image_column": cfg.get("control_image_column"),
               "ip_adapter_image_column": cfg.get("ip_adapter_image_column")}
    for key, column in columns.items():
        if column is not None and column not in header:
            raise ConfigError(f"prompts.{key}={column!r} is not a column of {file} (columns: {header}); "
                              "set it to one of them")
    items: list[PromptItem] = []
    for row in rows:
        text = (row.get(columns["column"]) or "").strip()
        if not text and cfg.get("skip_empty", True):
            continue
        refined, control, ip_image = ((row.get(columns[key]) or "").strip() or None if columns[key] else None
                                      for key in ("refined_column", "control_image_column", "ip_adapter_image_column"))
        items.append(PromptItem(len(items), text, refined, control, ip_image))
    limit = cfg.get("limit")
    items = items[: int(limit)] if limit is not None else items
    if not items:
        raise ConfigError(f"prompts.file={file} has no non-empty prompts in column {columns['column']!r}; "
                          "check the file or prompts.column")
    return items
