# Prompt sets from CSV files (DrawBench, Pick-a-Pic, GenEval, VBench lists): one row per prompt, seed = its index.
from __future__ import annotations

import csv
import io
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


def read_csv_strictly(file: Path, key: str = "prompts.file") -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file, refusing what would otherwise be read silently wrong: bytes that are not UTF-8,
    NUL bytes, an unterminated or stray quote (which would merge the rows after it into one field), rows with more or
    fewer fields than the header. Each refusal names the file and the line. (A quoted field may hold a line break:
    Pick-a-Pic's captions do.)"""
    data = file.read_bytes()
    where = f"{key}={file}"
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise ConfigError(f"{where} line {line}: a NUL byte (a binary or UTF-16 file?); re-export it as UTF-8 CSV")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError(f"{where} line {line}: byte 0x{data[err.start]:02x} is not UTF-8; re-export the file as "
                          "UTF-8") from err
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise ConfigError(f"{where} line {start}: {err} (an unterminated or stray quote?); quote whole fields "
                              'as "..." and double quotes inside them ("")') from err
        if row:  # blank lines carry no record
            records.append((start, row))
    if not records:
        return [], []
    (_, header), body = records[0], records[1:]
    for line, row in body:
        if len(row) != len(header):
            raise ConfigError(f"{where} line {line}: {len(row)} fields, the header has {len(header)} "
                              f"({header}); quote fields that contain a comma")
    return header, [dict(zip(header, row)) for _, row in body]


def load_prompts(cfg: Mapping) -> list[PromptItem]:
    """Read `cfg.file` (CSV with a header), column `cfg.column`; empty prompts dropped when `skip_empty`
    (the paper's Pick-a-Pic set is the first 100 non-empty captions), then the first `limit` rows kept."""
    file = Path(str(cfg.get("file")))
    if not file.is_file():
        raise ConfigError(f"prompts.file={file} does not exist; set ++prompts.file=/path/to/file.csv (or "
                          "paths.prompts_dir=/folder/of/prompt/files)")
    header, rows = read_csv_strictly(file)
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
