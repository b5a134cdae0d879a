# Ablation figure scripts: they rebuild PNG/PDF and README blocks from the committed sweeps, and fail clearly without.
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from paper_figures import (
    ablation_delta_alignment,
    ablation_gap_magnitude,
    ablation_inversion,
    ablation_reflection_steps,
    ablation_resampling,
    matched_nfe,
)
from paper_figures.readme_blocks import render_pages
from paper_figures.sweep_results import fmt_ci, load_sweep
from w2sd.validation import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
MODULES = [ablation_reflection_steps, ablation_gap_magnitude, ablation_inversion, ablation_resampling, matched_nfe,
           ablation_delta_alignment]


@pytest.fixture(scope="module")
def blocks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    out = tmp_path_factory.mktemp("figures")
    built: dict[str, str] = {}
    for module in MODULES:
        built.update(module.build(RESULTS, out))
    return built, out


def test_figures_and_readme_blocks_come_from_committed_results(blocks) -> None:
    built, out = blocks
    assert set(built) == {"ablation_reflection_steps", "ablation_gap_magnitude", "ablation_gap_scale",
                          "ablation_inversion", "ablation_resampling", "compare_matched_nfe", "delta_alignment"}
    for stem in ("ablation_reflection_steps", "ablation_gap_magnitude", "ablation_gap_scale", "ablation_inversion",
                 "compare_matched_nfe", "delta_alignment"):
        assert (out / f"{stem}.png").stat().st_size > 10_000 and (out / f"{stem}.pdf").exists()
        assert f"(paper_figures/out/{stem}.png)" in built[stem]
    stale = [page for page, (old, new) in render_pages(ROOT, built).items() if old != new]
    assert not stale, f"ablation blocks are stale in {stale}; run `python -m paper_figures`"


def test_table_cells_are_the_stored_numbers(blocks) -> None:
    built, _ = blocks
    for job in load_sweep(RESULTS, "ablation_gap_magnitude"):
        ratio = job["config"]["ablation"]["weak_bias_ratio"]
        row = next(line for line in built["ablation_gap_magnitude"].splitlines() if line.startswith(f"| {ratio:g} |"))
        assert fmt_ci(job["extra"]["ci"]["w2sd"]["tv_mode_weights"]) in row
    best = min(load_sweep(RESULTS, "ablation_gap_magnitude"),
               key=lambda j: j["extra"]["ci"]["w2sd"]["tv_mode_weights"]["mean"])
    assert f"smallest at weak_bias_ratio = {best['config']['ablation']['weak_bias_ratio']:g}" in \
        built["ablation_gap_magnitude"]


def test_missing_sweep_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"python -m toy\.run_ablations --root results --logger none "
                                          r"--only ablation_reflection_steps"):
        ablation_reflection_steps.build(tmp_path, tmp_path / "out")


def test_foreign_or_stale_results_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "ablation_resampling"
    shutil.copytree(RESULTS / "ablation_resampling", folder)
    job = next(folder.glob("*/results.json"))
    data = json.loads(job.read_text())
    job.write_text(json.dumps({**data, "experiment": "toy_gmm"}))
    with pytest.raises(ConfigError, match="holds experiment 'toy_gmm'"):
        ablation_resampling.build(tmp_path, tmp_path / "out")
    job.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(ConfigError, match="schema_version=99"):
        ablation_resampling.build(tmp_path, tmp_path / "out")
