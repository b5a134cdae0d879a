# Figures and markdown tables rebuilt from stored results.json files (never re-running sampling).
"""Every module here that defines `build(results_root: Path, out_dir: Path) -> dict[str, str]` is one figure/table
script: it reads `results_root/<experiment>/results.json`, writes its PNG/PDF files into `out_dir` and returns
results blocks (block name → markdown). `python -m paper_figures` runs them all and rewrites the blocks between
`<!-- results:NAME -->` and `<!-- /results:NAME -->` on README.md and docs/*.md; `--check` only compares."""
