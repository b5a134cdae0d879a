# Statistics for comparing methods: bootstrap confidence intervals, paired differences and win rates.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from w2sd.validation import ConfigError


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def _array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} contains NaN or inf; drop or fix those samples first")
    return arr


def bootstrap_ci(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> Interval:
    """Mean with a percentile-bootstrap CI (resampling the values with replacement, fixed seed)."""
    arr = _array(values, "values")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must be in (0, 1), e.g. 0.95")
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(resamples, arr.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return Interval(float(arr.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)),
                    int(arr.size))


def paired_difference(a: Sequence[float], b: Sequence[float], **kwargs: float) -> Interval:
    """Bootstrap CI of mean(a − b) over paired samples (same prompt / seed)."""
    x, y = _array(a, "a"), _array(b, "b")
    if x.shape != y.shape:
        raise ConfigError(f"paired samples differ in length: {x.size} vs {y.size}; align them by prompt/seed")
    return bootstrap_ci(x - y, **kwargs)


@dataclass(frozen=True)
class WinRate:
    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def rate(self) -> float:
        """Wins over all pairs; ties count as not-wins (reported separately)."""
        return self.wins / self.n

    def as_dict(self) -> dict[str, float]:
        return {"win_rate": self.rate, "wins": self.wins, "ties": self.ties, "losses": self.losses}


def win_rate(a: Sequence[float], b: Sequence[float], *, tol: float = 0.0) -> WinRate:
    """Per-pair comparison of a against b (higher is better); |a − b| ≤ tol is a tie."""
    x, y = _array(a, "a"), _array(b, "b")
    if x.shape != y.shape:
        raise ConfigError(f"paired samples differ in length: {x.size} vs {y.size}; align them by prompt/seed")
    d = x - y
    ties = int(np.sum(np.abs(d) <= tol))
    wins = int(np.sum(d > tol))
    return WinRate(wins, ties, int(x.size) - wins - ties)
