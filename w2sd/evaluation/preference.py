# Pairwise preference percentages from a preference model's two-way softmax (the form of the paper's MPS column).
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from w2sd.validation import ConfigError


def pairwise_preference(logits_a: Sequence[float], logits_b: Sequence[float]) -> tuple[float, float]:
    """Mean over prompts of P(A ≻ B) = softmax([s_A, s_B])_0, as percentages (A%, B%) that sum to 100.

    `logits_*` are per-prompt preference logits of the same prompt/seed (e.g. PickScore's exp(τ)·cos).
    """
    a, b = np.asarray(logits_a, dtype=np.float64), np.asarray(logits_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ConfigError(f"preference logits must be paired 1-D arrays, got shapes {a.shape} and {b.shape}")
    p_a = 1.0 / (1.0 + np.exp(np.clip(b - a, -700, 700)))  # softmax over two entries, overflow-safe
    pct_a = float(100.0 * p_a.mean())
    return pct_a, 100.0 - pct_a
