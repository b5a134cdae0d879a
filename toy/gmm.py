# Isotropic Gaussian mixtures and their exact noised densities and denoisers at any noise level (VP or flow).
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from w2sd.ddim import Level, VPLevel
from w2sd.validation import ConfigError, check_probabilities

CLEAN = VPLevel.from_alpha_bar(1.0)


@dataclass(frozen=True)
class GaussianMixture:
    """Mixture Σ_k π_k N(μ_k, s²I). Noised to a level x = αx₀ + σε it stays a mixture: N(α μ_k, (α²s² + σ²) I)."""

    means: torch.Tensor  # [K, D] float64
    std: float
    weights: torch.Tensor  # [K] float64

    @classmethod
    def build(cls, means: list, std: float, weights: list, name: str = "weights") -> GaussianMixture:
        try:
            m = torch.as_tensor(means, dtype=torch.float64)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"means={means} must be points of equal dimension, e.g. [[-4.0], [4.0]]") from err
        if m.dim() != 2:
            raise ConfigError(f"means={means} must be a list of points, e.g. [[-4.0], [4.0]]")
        if not std > 0:
            raise ConfigError(f"std={std} must be > 0")
        w = check_probabilities(name, weights, length=m.shape[0])
        return cls(m, float(std), torch.tensor(w, dtype=torch.float64))

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def _components(self, x: torch.Tensor, level: Level) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Log joint log π_k + log N_k(x) [B, K], the differences x − αμ_k [B, K, D], and the variance."""
        var = level.noised_variance(self.std**2)
        diff = x.to(torch.float64)[:, None, :] - level.alpha * self.means[None]
        log_norm = -0.5 * (diff**2).sum(-1) / var - 0.5 * self.dim * math.log(2 * math.pi * var)
        with torch.no_grad():
            log_w = torch.log(self.weights).clamp_min(-1e30)
        return log_w[None] + log_norm, diff, var

    def log_prob(self, x: torch.Tensor, level: Level = CLEAN) -> torch.Tensor:
        joint, _, _ = self._components(x, level)
        return torch.logsumexp(joint, dim=1)

    def responsibilities(self, x: torch.Tensor, level: Level = CLEAN) -> torch.Tensor:
        joint, _, _ = self._components(x, level)
        return torch.softmax(joint, dim=1)

    def score(self, x: torch.Tensor, level: Level) -> torch.Tensor:
        """∇_x log p_level(x) in float64."""
        joint, diff, var = self._components(x, level)
        resp = torch.softmax(joint, dim=1)
        return -(resp[..., None] * diff).sum(1) / var

    def posterior_means(self, x: torch.Tensor, level: Level) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[x₀ | x], E[ε | x]) at a level, in float64, without dividing by α (finite at α = 0): per component
        x₀ | x ~ N(μ_k + α s²(x − αμ_k)/v, ·) and ε | x has mean σ(x − αμ_k)/v, v = α²s² + σ²."""
        joint, diff, var = self._components(x, level)
        resp = torch.softmax(joint, dim=1)[..., None]
        x0 = (resp * (self.means[None] + level.alpha * self.std**2 * diff / var)).sum(1)
        eps = (resp * diff).sum(1) * level.sigma / var
        return x0, eps

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.std * noise


class ExactDenoiser:
    """A mixture's exact prediction in its schedule's parameterisation (`schedule.level_at(t)` gives the level):
    ε(x, t) = −σ_t ∇log p_t(x) on a VP schedule, the flow velocity v = E[ε − x₀ | x] on a flow schedule."""

    def __init__(self, mixture: GaussianMixture, schedule: Any) -> None:
        self.mixture, self.schedule = mixture, schedule

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        level = self.schedule.level_at(t)
        if self.schedule.prediction == "epsilon":
            return (-level.sigma * self.mixture.score(x, level)).to(x.dtype)
        x0, eps = self.mixture.posterior_means(x, level)
        return (eps - x0).to(x.dtype)
