# Per-sample seeding: one torch.Generator per seed, so samples never depend on batch size or process count.
from __future__ import annotations

from collections.abc import Sequence

import torch

SEED_STRIDE = 10_000_000  # sample i of base seed s uses seed s·STRIDE + i, so runs with different seeds never overlap


def sample_seeds(seed: int, n: int) -> list[int]:
    return [seed * SEED_STRIDE + i for i in range(n)]


def per_sample_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def fork_generators(generators: Sequence[torch.Generator]) -> list[torch.Generator]:
    """Independent copies in the generators' current state: every method run from one shared x_T continues the
    same per-sample streams, at a third of the cost of re-seeding and re-drawing x_T for each method."""
    return [g.clone_state() for g in generators]


def per_sample_randn(
    generators: Sequence[torch.Generator], shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Stack one draw of `shape` per generator (drawn on CPU so results match across devices)."""
    dims = tuple(int(n) for n in shape)
    out = torch.empty((len(generators), *dims), dtype=dtype)
    size = dims or ((),)  # unpacked ints: torch parses them faster than one size tuple (this loop is the toy's cost)
    for g, row in zip(generators, out.unbind(0)):
        torch.randn(*size, generator=g, dtype=dtype, out=row)
    return out
