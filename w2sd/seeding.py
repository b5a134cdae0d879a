# Per-sample seeding: one torch.Generator per seed, so samples never depend on batch size or process count.
from __future__ import annotations

from collections.abc import Sequence

import torch

SEED_STRIDE = 10_000_000  # sample i of base seed s uses seed s·STRIDE + i, so runs with different seeds never overlap


def sample_seeds(seed: int, n: int) -> list[int]:
    return [seed * SEED_STRIDE + i for i in range(n)]


def per_sample_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def per_sample_randn(
    generators: Sequence[torch.Generator], shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Stack one draw of `shape` per generator (drawn on CPU so results match across devices)."""
    return torch.stack([torch.randn(tuple(shape), generator=g, dtype=dtype) for g in generators])
