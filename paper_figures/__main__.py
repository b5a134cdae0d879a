# `python -m paper_figures [--check]`: rebuild every figure/table from stored results, refresh README/docs blocks.
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import tempfile
from pathlib import Path

import paper_figures
from paper_figures.common import RESULTS_ROOT
from paper_figures.readme_blocks import render_pages
from w2sd.results import atomic_write_text
from w2sd.validation import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def build_all(results_root: Path, out_dir: Path, only: list[str] | None = None) -> dict[str, str]:
    blocks: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(paper_figures.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or (only and info.name not in only):
            continue
        module = importlib.import_module(f"paper_figures.{info.name}")
        if callable(getattr(module, "build", None)):
            blocks.update(module.build(results_root, out_dir))
    return blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paper_figures", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS_ROOT, help="folder of <experiment>/results.json")
    parser.add_argument("--out", type=Path, default=ROOT / "paper_figures" / "out", help="figure output folder")
    parser.add_argument("--root", type=Path, default=ROOT, help="folder holding README.md and docs/*.md")
    parser.add_argument("--check", action="store_true", help="only compare the pages' blocks; write nothing")
    parser.add_argument("--only", nargs="*", help="figure modules to run (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                blocks = build_all(args.results, Path(tmp), args.only)
        else:
            blocks = build_all(args.results, args.out, args.only)
        pages = render_pages(args.root, blocks)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stale = [page for page, (old, new) in pages.items() if old != new]
    if args.check:
        if stale:
            names = ", ".join(str(p.relative_to(args.root)) for p in stale)
            print(f"results blocks are stale in {names}; run `python -m paper_figures`", file=sys.stderr)
            return 1
        print(f"results blocks are up to date ({len(blocks)} blocks on {len(pages)} pages)")
        return 0
    for page in stale:
        atomic_write_text(page, pages[page][1])
    print(f"rebuilt {len(blocks)} results blocks ({len(stale)} pages changed); figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
