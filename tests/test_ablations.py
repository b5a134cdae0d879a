# Toy ablation jobs: bias-ratio/gap-scale/λ-fraction knobs, seed repetition with CIs, and the theory's predictions.
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from toy.ablation_delta_alignment import DeltaAlignmentExperiment
from toy.ablations import ScaledGapDenoiser, ToyAblationExperiment, resolve_lam_fraction, weights_with_bias_ratio
from w2sd.runner import run_experiment
from w2sd.validation import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["num_samples=100", "num_seeds=3", "sampler.T=10", "logger=none"]


def compose_cfg(*overrides: str, cache: Path | None = None):
    extra = [f"paths.cache_dir={cache}"] if cache else []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"paths.root_dir={ROOT}", *extra, *overrides])


def test_bias_ratio_weights() -> None:
    ideal, strong = [0.5, 0.5], [0.4, 0.6]
    assert weights_with_bias_ratio(ideal, strong, 2.0) == pytest.approx([0.3, 0.7])
    assert weights_with_bias_ratio(ideal, strong, 1.0) == pytest.approx(strong)
    assert weights_with_bias_ratio(ideal, strong, -1.0) == pytest.approx([0.6, 0.4])
    with pytest.raises(ConfigError, match=r"weak_bias_ratio=6.0 .*at most 5"):
        weights_with_bias_ratio(ideal, strong, 6.0)


def test_lam_fraction() -> None:
    methods = resolve_lam_fraction({"a": {"sampler": "w2sd", "lam_fraction": 0.5}, "b": {"sampler": "ddim"}}, 25)
    assert methods == {"a": {"sampler": "w2sd", "lam": 12}, "b": {"sampler": "ddim"}}
    assert resolve_lam_fraction({"a": {"lam_fraction": 1.0}}, 10)["a"]["lam"] == 9  # capped at T − 1
    with pytest.raises(ConfigError, match="lam_fraction=2"):
        resolve_lam_fraction({"a": {"lam_fraction": 2}}, 10)
    with pytest.raises(ConfigError, match="both lam and lam_fraction"):
        resolve_lam_fraction({"a": {"lam": 3, "lam_fraction": 0.5}}, 10)


def test_scaled_gap_denoiser_interpolates() -> None:
    strong = lambda x, t: x * 2.0  # noqa: E731
    weak = lambda x, t: x * 5.0  # noqa: E731
    x = torch.ones(3, 1)
    assert torch.allclose(ScaledGapDenoiser(strong, weak, 0.0)(x, 0), strong(x, 0))
    assert torch.allclose(ScaledGapDenoiser(strong, weak, 1.0)(x, 0), weak(x, 0))
    assert torch.allclose(ScaledGapDenoiser(strong, weak, -1.0)(x, 0), x * -1.0)


def test_ablation_job_repeats_seeds_with_cis_and_is_deterministic(tmp_path: Path) -> None:
    cfg = compose_cfg("experiment=ablation_resampling", *SMALL)
    first = run_experiment(cfg, tmp_path / "a")
    second = run_experiment(cfg, tmp_path / "b")
    assert first["metrics"] == second["metrics"]
    extra = first["extra"]
    assert extra["seeds"] == [0, 1, 2]
    for method in ("strong", "w2sd", "resampling_aligned", "resampling_anti"):
        values = extra["per_seed"][method]["w1"]
        assert len(set(values)) == 3  # different seeds, different samples
        interval = extra["ci"][method]["w1"]
        # exact for n = 3: a resample repeats the smallest value three times with probability 1/27 = 3.7 % > 2.5 %
        # (≈ 370 of the 10,000 resamples), so the 95 % percentile-bootstrap interval is [min, max] of the seeds
        assert interval["ci_low"] == pytest.approx(min(values), rel=1e-12)
        assert interval["ci_high"] == pytest.approx(max(values), rel=1e-12)
        assert first["metrics"][method]["w1"] == pytest.approx(sum(values) / 3, rel=1e-12)
    wins = extra["win_rates"]["w2sd"]["w1"]
    assert wins["wins"] + wins["ties"] + wins["losses"] == 3
    assert "strong" not in extra["win_rates"]


@pytest.mark.parametrize("override, message", [
    ("num_seeds=0", "num_seeds=0 must be >= 1"),
    ("ablation.baseline=nope", "ablation.baseline='nope' is not one of the methods"),
    ("+ablation.ratio=2", r"unknown ablation key\(s\) \['ratio'\]"),
    ("ablation.weak_bias_ratio=9", "weak_bias_ratio=9.0 gives negative weak weights"),
    ("ablation.weak_gap_scale=big", "weak_gap_scale='big' must be a number"),
])
def test_bad_ablation_config_is_rejected_before_work(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ToyAblationExperiment(compose_cfg("experiment=ablation_gap_magnitude", *SMALL, override)).validate()


def error_of(result: dict, method: str) -> float:
    return result["metrics"][method]["tv_mode_weights"]


def test_bias_ratio_two_beats_strong_and_reversed_gap_hurts(tmp_path: Path) -> None:
    """Camera-ready theory (paper.md §1.6): weak bias = 2 × strong bias makes Δ1 ≈ Δ2; a reversed gap misleads."""
    base = ["experiment=ablation_gap_magnitude", "num_samples=1000", "num_seeds=3", "sampler.T=20", "logger=none"]
    ratio2 = run_experiment(compose_cfg(*base, "ablation.weak_bias_ratio=2"), tmp_path / "r2")
    reversed_gap = run_experiment(compose_cfg(*base, "ablation.weak_bias_ratio=-1"), tmp_path / "rneg")
    assert error_of(ratio2, "w2sd") < 0.5 * error_of(ratio2, "strong")
    assert ratio2["extra"]["win_rates"]["w2sd"]["tv_mode_weights"]["wins"] == 3
    assert error_of(reversed_gap, "w2sd") > error_of(reversed_gap, "strong") + 0.05
    assert reversed_gap["extra"]["weak_weights"] == pytest.approx([0.6, 0.4])


def test_gap_scale_zero_means_no_gap(tmp_path: Path) -> None:
    """γ = 0 makes the weak model the strong one: autoguidance is then exactly standard sampling."""
    cfg = compose_cfg("experiment=ablation_gap_scale", *SMALL, "ablation.weak_gap_scale=0")
    result = run_experiment(cfg, tmp_path)
    assert result["extra"]["per_seed"]["autoguidance"] == result["extra"]["per_seed"]["strong"]


def test_delta_alignment_small_run(tmp_path: Path) -> None:
    cfg = compose_cfg("experiment=delta_alignment", "num_seeds=1", "num_samples=200", "diagnostic_samples=100",
                      "sampler.T=6", "training_steps.weak=4", "training_steps.strong=8", "training_steps.ideal=12",
                      "model.train_samples=512", "logger=none", cache=tmp_path / "cache")
    result = run_experiment(cfg, tmp_path / "run")
    curves = result["extra"]["cos_curves"]
    assert set(curves) == {"trained", "trained_vs_exact", "exact"}
    assert all(len(c["mean"]) == 6 for c in curves.values())
    # exact biased 1D mixtures (strong 0.45/0.55, weak 0.25/0.75): Δ1 and Δ2 point the same way at every step
    assert min(curves["exact"]["mean"]) > 0.5
    assert result["extra"]["training"][0]["ideal"]["cached"] is False


def test_delta_alignment_rejects_bad_training_lengths() -> None:
    cfg = compose_cfg("experiment=delta_alignment", "training_steps.weak=900", "logger=none")
    with pytest.raises(ConfigError, match="must grow weak < strong < ideal"):
        DeltaAlignmentExperiment(cfg).validate()
