# Plain-text and markdown tables of `metrics[method][metric]`, shared by the runner and paper_figures.
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def format_value(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def scalar_columns(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Metric names holding scalars, in first-seen order."""
    cols: list[str] = []
    for row in metrics.values():
        for key, value in row.items():
            if key not in cols and (value is None or isinstance(value, (int, float))):
                cols.append(key)
    return cols


def markdown_table(metrics: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4, row_header: str = "method") -> str:
    cols = list(columns) if columns is not None else scalar_columns(metrics)
    lines = ["| " + " | ".join([row_header, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in metrics.items():
        lines.append("| " + " | ".join([name, *(format_value(row.get(c), digits) for c in cols)]) + " |")
    return "\n".join(lines)


def text_table(metrics: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None,
               digits: int = 4) -> str:
    cols = list(columns) if columns is not None else scalar_columns(metrics)
    rows = [["method", *cols]] + [[n, *(format_value(r.get(c), digits) for c in cols)] for n, r in metrics.items()]
    widths = [max(len(r[j]) for r in rows) for j in range(len(cols) + 1)]
    out = ["  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(r, widths)))
           for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
