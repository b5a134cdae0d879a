# Sample-quality metrics against the ideal mixture, and the paper's Δ1·Δ2 alignment diagnostic.
"""Distances: 1D uses the exact Wasserstein-1 between empirical distributions. 2D uses the sliced
Wasserstein-1: the mean 1D W1 over `num_projections` fixed random unit directions. We chose sliced W1 over MMD
because it keeps W1's units (distance in x) and needs no kernel bandwidth."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from toy.gmm import GaussianMixture
from w2sd.ddim import Level, Prediction, split_prediction
from w2sd.sampling import Schedule, sample_ddim


def mode_assignment(samples: torch.Tensor, ideal: GaussianMixture) -> torch.Tensor:
    """Index of each sample's most probable ideal mode (posterior argmax under the clean ideal mixture)."""
    return ideal.responsibilities(samples).argmax(1)


def mode_weights(samples: torch.Tensor, ideal: GaussianMixture, assign: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of samples whose most probable ideal mode is k."""
    assign = mode_assignment(samples, ideal) if assign is None else assign
    return torch.bincount(assign, minlength=ideal.means.shape[0]).double() / samples.shape[0]


def wasserstein1_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W1 between two 1D empirical distributions: ∫|F_a − F_b| dx over the pooled sorted support. Our own
    few lines instead of scipy.stats.wasserstein_distance, whose import alone costs the main job a second."""
    a, b = np.sort(a), np.sort(b)
    pooled = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, pooled[:-1], side="right") / a.size
    cdf_b = np.searchsorted(b, pooled[:-1], side="right") / b.size
    return float(np.dot(np.abs(cdf_a - cdf_b), np.diff(pooled)))


def wasserstein1(samples: torch.Tensor, reference: torch.Tensor, num_projections: int = 256, seed: int = 0) -> float:
    a, b = samples.double().numpy(), reference.double().numpy()
    if a.shape[1] == 1:
        return wasserstein1_1d(a[:, 0], b[:, 0])
    dirs = np.random.default_rng(seed).standard_normal((num_projections, a.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    return float(np.mean([wasserstein1_1d(a @ d, b @ d) for d in dirs]))


def within_mode_std(samples: torch.Tensor, ideal: GaussianMixture, assign: torch.Tensor | None = None) -> float:
    """Mean over populated modes of the per-dimension std of the samples assigned to that mode (ideal: s)."""
    assign = mode_assignment(samples, ideal) if assign is None else assign
    stds = [samples[assign == k].double().std(0).mean().item() for k in range(ideal.means.shape[0])
            if int((assign == k).sum()) > 1]
    return float(np.mean(stds)) if stds else math.nan


def sample_metrics(samples: torch.Tensor, ideal: GaussianMixture, reference: torch.Tensor, target_mode: int) -> dict:
    assign = mode_assignment(samples, ideal)
    weights = mode_weights(samples, ideal, assign)
    return {
        "target_mode_weight": float(weights[target_mode]),
        "tv_mode_weights": float(0.5 * (weights - ideal.weights).abs().sum()),
        "w1": wasserstein1(samples, reference),
        "nll": float(-ideal.log_prob(samples).mean()),
        "within_mode_std": within_mode_std(samples, ideal, assign),
        "mode_weights": weights.tolist(),
    }


def score_from_prediction(model: Callable, x: torch.Tensor, t: float, level: Level,
                          prediction: Prediction = "epsilon") -> torch.Tensor:
    """∇log p at a level from a network output in either parameterisation: −ε̂/σ."""
    return -split_prediction(x, model(x, t), level, prediction)[1].double() / level.sigma


def strong_trajectory(strong: Callable, x_T: torch.Tensor, schedule: Schedule) -> list[torch.Tensor]:
    """Latents x_{t_0} … x_{t_{T-1}} of a strong DDIM run: the points where the Δ1·Δ2 diagnostic is read."""
    trajectory = [x_T]
    sample_ddim(strong, x_T, schedule, callback=lambda s: trajectory.append(s["x"]))
    return trajectory[:-1]


def delta_alignment(
    trajectory: list[torch.Tensor],
    schedule: Schedule,
    strong: Callable,
    weak: Callable,
    ideal: Callable,
) -> dict[str, list[float]]:
    """Per sampling level i, at the strong trajectory's latents x_{t_i}: Δ1 = s_strong − s_weak and
    Δ2 = s_ideal − s_strong. `cos_flat` is the cosine of the two fields over all samples at once (large-|Δ|
    samples weigh more); `aligned_frac` is the fraction of samples with ⟨Δ1, Δ2⟩ > 0 (in 1D, the sign agreement)."""
    out: dict[str, list[float]] = {"timestep": [], "sigma": [], "cos_flat": [], "aligned_frac": []}
    for i, x in enumerate(trajectory):
        t, a = schedule.timesteps[i], schedule.level(i)
        s_s, s_w, s_gt = (score_from_prediction(m, x, t, a, schedule.prediction) for m in (strong, weak, ideal))
        d1, d2 = (s_s - s_w).flatten(1), (s_gt - s_s).flatten(1)
        denom = d1.norm() * d2.norm()
        out["timestep"].append(t)
        out["sigma"].append(schedule.sigma(i))
        out["cos_flat"].append(float((d1 * d2).sum() / denom) if denom > 0 else math.nan)
        out["aligned_frac"].append(float(((d1 * d2).sum(1) > 0).double().mean()))
    return out
