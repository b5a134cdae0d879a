# Side-by-side pictures of a table run: gallery.png (prompts × methods) and a static gallery.html with every score.
"""A column is one method of one generation run: its label, the run folder (manifest.csv) and, once scored, the
evaluate run's scores.csv. Every method of a run shares the seed of a prompt (seed = prompt index), so a row
compares methods from the same initial noise. Videos (frames > 1, stored as one strip) show their first, middle
and last frame."""
from __future__ import annotations

import csv
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from w2sd.evaluation.run_dir import open_image
from w2sd.evaluation.video import split_strip
from w2sd.results import atomic_write_bytes, atomic_write_text

LABEL_HEIGHT = 28
PROMPT_WIDTH = 220
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


@dataclass(frozen=True)
class Column:
    label: str              # e.g. "W2SD (eval_t10_sdxl)"
    method: str             # method name inside the generation run
    run_dir: Path           # generation run folder (manifest.csv)
    scores: Path | None     # the evaluate run's scores.csv, when scored


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def column_samples(column: Column) -> dict[int, dict]:
    """prompt index → manifest row of this column's method, with its scores (metric → value) when scored."""
    rows = {int(r["index"]): dict(r) for r in read_rows(column.run_dir / "manifest.csv")
            if r["method"] == column.method}
    if column.scores is not None and column.scores.is_file():
        for r in read_rows(column.scores):
            if r["method"] == column.method and int(r["index"]) in rows:
                rows[int(r["index"])]["scores"] = {k: float(v) for k, v in r.items()
                                                   if k not in ("method", "index", "seed", "prompt", "path")}
    return rows


def gallery_indices(indices: list[int], rows: int) -> list[int]:
    """At most `rows` prompt indices spread evenly over the set (first and last included): the same choice on
    every run of the same table, whatever the machine."""
    if len(indices) <= rows:
        return list(indices)
    picks = np.linspace(0, len(indices) - 1, rows).round().astype(int)
    return [indices[i] for i in dict.fromkeys(picks.tolist())]


def tile(path: Path, frames: int, height: int) -> Image.Image:
    """One image scaled to `height`, or a video's first, middle and last frame side by side."""
    image = open_image(path)
    if frames > 1:
        shots = split_strip(image, frames)
        picks = [shots[0], shots[len(shots) // 2], shots[-1]]
        image = Image.new("RGB", (sum(p.width for p in picks), picks[0].height))
        x = 0
        for p in picks:
            image.paste(p, (x, 0))
            x += p.width
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.BICUBIC)


def write_png(columns: list[Column], samples: list[dict[int, dict]], indices: list[int], path: Path,
              height: int) -> Path:
    """Rows = the chosen prompts, columns = methods; the column label on top and the prompt text on the left."""
    tiles = [[tile(column.run_dir / s[i]["path"], int(s[i]["frames"]), height) for column, s in zip(columns, samples)]
             for i in indices]
    widths = [max(row[c].width for row in tiles) for c in range(len(columns))]
    canvas = Image.new("RGB", (PROMPT_WIDTH + sum(widths), LABEL_HEIGHT + height * len(indices)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = PROMPT_WIDTH
    for column, width in zip(columns, widths):
        draw.text((x + 4, 8), column.label[: max(4, width // 7)], fill=INK)
        x += width
    for r, (index, row) in enumerate(zip(indices, tiles)):
        y = LABEL_HEIGHT + r * height
        prompt = samples[0][index]["prompt"]
        for k in range(0, min(len(prompt), 6 * 30), 30):  # wrap the prompt in 30-character lines
            draw.text((4, y + 4 + 12 * (k // 30)), prompt[k:k + 30], fill=INK)
        draw.text((4, y + height - 14), f"#{index}  seed {samples[0][index]['seed']}", fill=INK)
        x = PROMPT_WIDTH
        for image, width in zip(row, widths):
            canvas.paste(image, (x, y))
            x += width
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


def write_html(columns: list[Column], samples: list[dict[int, dict]], indices: list[int], path: Path,
               title: str) -> Path:
    """Every prompt and every image (relative links, so the folder can be copied anywhere) with its scores."""
    head = "".join(f"<th>{html.escape(c.label)}</th>" for c in columns)
    body = []
    for index in indices:
        first = samples[0][index]
        cells = []
        for column, s in zip(columns, samples):
            row = s[index]
            src = Path(os.path.relpath(column.run_dir / row["path"], path.parent)).as_posix()
            scores = "<br>".join(f"{html.escape(k)} {v:.4f}" for k, v in row.get("scores", {}).items())
            cells.append(f'<td><a href="{html.escape(src)}"><img src="{html.escape(src)}" loading="lazy"></a>'
                         f"<div class=s>{scores}</div></td>")
        body.append(f"<tr><td class=p>#{index} · seed {html.escape(first['seed'])}<br>{html.escape(first['prompt'])}"
                    f"</td>{''.join(cells)}</tr>")
    page = (f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif}td{vertical-align:top;padding:4px}img{max-height:256px}"
            ".p{max-width:220px}.s{font-size:12px;color:#333}</style>"
            f"<h1>{html.escape(title)}</h1><table><tr><th>prompt</th>{head}</tr>{''.join(body)}</table>\n")
    return atomic_write_text(path, page)


def write_gallery(columns: list[Column], out_dir: Path, *, title: str, rows: int = 8,
                  height: int = 192) -> tuple[Path, Path]:
    """gallery.png over a bounded, deterministic choice of prompts and gallery.html over all of them; only prompts
    that every column holds are shown."""
    samples = [column_samples(c) for c in columns]
    common = sorted(set.intersection(*(set(s) for s in samples)))
    png = write_png(columns, samples, gallery_indices(common, rows), out_dir / "gallery.png", height)
    page = write_html(columns, samples, common, out_dir / "gallery.html", title)
    return png, page
