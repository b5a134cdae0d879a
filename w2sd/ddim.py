# The deterministic DDIM transfer between two noise levels (α, σ): a denoising step or, run upward, an inversion step.
"""A level is a pair (α, σ) with x = α·x₀ + σ·ε: variance preserving (α² + σ² = 1, DDPM/DDIM) or rectified flow
(α = 1 − σ). A network's output is read at the level the latent is at, as ε (`epsilon`) or as the flow velocity
v = ε − x₀ (`velocity`); then a DDIM step re-places x̂₀ at the new level along the same ε. On a flow level pair
that step is exactly Euler, x_to = x + (σ_to − σ_from)·v, so one code path serves both model families."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

Prediction = Literal["epsilon", "velocity"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)


@dataclass(frozen=True)
class Level:
    """A noise level x = α·x₀ + σ·ε of any forward process."""

    alpha: float
    sigma: float

    @classmethod
    def flow(cls, sigma: float) -> Level:
        """Rectified flow: x = (1 − σ)·x₀ + σ·ε."""
        return cls(1.0 - sigma, sigma)

    def noised_variance(self, variance: float) -> float:
        """Variance of α·x₀ + σ·ε for x₀ of the given variance."""
        return self.alpha**2 * variance + self.sigma**2

    def diffusion_from(self, other: Level) -> tuple[float, float]:
        """(a, b) of the forward transition q(x_self | x_other) = N(a·x_other, b²I), for a noisier self."""
        a = self.alpha / other.alpha
        return a, math.sqrt(self.sigma**2 - (a * other.sigma) ** 2)


@dataclass(frozen=True)
class VPLevel(Level):
    """A variance-preserving level given by ā (α = √ā, σ = √(1 − ā)); it computes in ā, as diffusers' DDIM
    schedulers do, so the VP samplers stay bit-identical to their ā-only form."""

    alpha_bar: float = 1.0

    @classmethod
    def from_alpha_bar(cls, alpha_bar: float) -> VPLevel:
        return cls(math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar), alpha_bar)

    def noised_variance(self, variance: float) -> float:
        return self.alpha_bar * variance + 1.0 - self.alpha_bar

    def diffusion_from(self, other: Level) -> tuple[float, float]:
        if not isinstance(other, VPLevel):
            return super().diffusion_from(other)
        ratio = self.alpha_bar / other.alpha_bar
        return math.sqrt(ratio), math.sqrt(1.0 - ratio)


def split_prediction(x: torch.Tensor, out: torch.Tensor, level: Level,
                     prediction: Prediction = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂₀, ε̂) that a network output implies for x at `level`. A velocity is read without dividing by α, so the
    flow grid's first level σ = 1 (α = 0) is fine: from x = αx₀ + σε and v = ε − x₀, x₀ = (x − σv)/(α + σ)."""
    if prediction == "epsilon":
        return (x - level.sigma * out) / level.alpha, out
    if prediction == "velocity":
        norm = level.alpha + level.sigma
        return (x - level.sigma * out) / norm, (x + level.alpha * out) / norm
    raise ValueError(f"prediction={prediction!r} is not one of {PREDICTIONS}")


def predict_x0(x: torch.Tensor, eps: torch.Tensor, level: Level) -> torch.Tensor:
    """The clean sample an ε-prediction implies at a level: x̂₀ = (x − σ·ε)/α."""
    return split_prediction(x, eps, level)[0]


def from_x0(x0: torch.Tensor, eps: torch.Tensor, level: Level) -> torch.Tensor:
    """Put x̂₀ back at a level along the same ε: α·x̂₀ + σ·ε."""
    return level.alpha * x0 + level.sigma * eps


def ddim_transfer(x: torch.Tensor, out: torch.Tensor, level_from: Level, level_to: Level,
                  prediction: Prediction = "epsilon") -> torch.Tensor:
    """Move x from `level_from` to `level_to` along the network output `out` read at `level_from` (x̂₀ and ε̂ there,
    re-noised at `level_to`). Toward less noise this is a DDIM (flow: Euler) step, toward more noise an inversion
    step; (a→b) then (b→a) with the same output returns x exactly (up to float rounding)."""
    x0, eps = split_prediction(x, out, level_from, prediction)
    return from_x0(x0, eps, level_to)


def renoise(x: torch.Tensor, noise: torch.Tensor, level_from: Level, level_to: Level) -> torch.Tensor:
    """Forward-diffuse x from `level_from` to the noisier `level_to` with fresh Gaussian noise (q(x_to | x_from))."""
    a, b = level_to.diffusion_from(level_from)
    return a * x + b * noise
