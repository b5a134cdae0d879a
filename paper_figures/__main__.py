# `python -m paper_figures [--check]`: rebuild every figure/table from stored results and refresh README blocks.
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import tempfile
from pathlib import Path

import paper_figures
from paper_figures.common import RESULTS_ROOT
from paper_figures.readme_blocks import replace_blocks
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
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="only compare README blocks; write nothing")
    parser.add_argument("--only", nargs="*", help="figure modules to run (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            with tempfile.TemporaryDirectory() as tmp:
                blocks = build_all(args.results, Path(tmp), args.only)
        else:
            blocks = build_all(args.results, args.out, args.only)
        text = args.readme.read_text(encoding="utf-8")
        updated = replace_blocks(text, blocks)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print("README.md results blocks are stale; run `python -m paper_figures`", file=sys.stderr)
            return 1
        print(f"README.md results blocks are up to date ({len(blocks)} blocks)")
        return 0
    atomic_write_text(args.readme, updated)
    print(f"rebuilt {len(blocks)} README blocks; figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
