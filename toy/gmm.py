# Isotropic Gaussian mixtures and their exact noised densities under the VP forward process.
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from w2sd.validation import ConfigError, check_probabilities


@dataclass(frozen=True)
class GaussianMixture:
    """Mixture Σ_k π_k N(μ_k, s²I). Noised to level ā it stays a mixture: N(√ā μ_k, (ā s² + 1 − ā) I)."""

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

    def _components(self, x: torch.Tensor, alpha_bar: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Log joint log π_k + log N_k(x) [B, K], the differences x − μ_k(ā) [B, K, D], and the variance."""
        var = alpha_bar * self.std**2 + 1.0 - alpha_bar
        diff = x.to(torch.float64)[:, None, :] - math.sqrt(alpha_bar) * self.means[None]
        log_norm = -0.5 * (diff**2).sum(-1) / var - 0.5 * self.dim * math.log(2 * math.pi * var)
        with torch.no_grad():
            log_w = torch.log(self.weights).clamp_min(-1e30)
        return log_w[None] + log_norm, diff, var

    def log_prob(self, x: torch.Tensor, alpha_bar: float = 1.0) -> torch.Tensor:
        joint, _, _ = self._components(x, alpha_bar)
        return torch.logsumexp(joint, dim=1)

    def responsibilities(self, x: torch.Tensor, alpha_bar: float = 1.0) -> torch.Tensor:
        joint, _, _ = self._components(x, alpha_bar)
        return torch.softmax(joint, dim=1)

    def score(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """∇_x log p_ā(x) in float64."""
        joint, diff, var = self._components(x, alpha_bar)
        resp = torch.softmax(joint, dim=1)
        return -(resp[..., None] * diff).sum(1) / var

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.std * noise


class ExactEpsDenoiser:
    """ε-prediction of a mixture's exact score: ε(x, t) = −√(1 − ā_t) ∇log p_t(x)."""

    def __init__(self, mixture: GaussianMixture, alphas_cumprod: torch.Tensor) -> None:
        self.mixture = mixture
        self.alphas_cumprod = alphas_cumprod

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        a = float(self.alphas_cumprod[t])
        return (-math.sqrt(1.0 - a) * self.mixture.score(x, a)).to(x.dtype)
