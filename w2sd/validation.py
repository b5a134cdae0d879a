# Configuration errors: one clear line naming the bad value and the fix, raised before any work starts.
from __future__ import annotations

import math
from collections.abc import Sequence


class ConfigError(ValueError):
    """A user-facing configuration mistake; run.py prints it as a single `error:` line."""


def check_int_range(name: str, value: object, lo: int, hi: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer{'; ' + hint if hint else ''}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{name}={value} must be {bound}{'; ' + hint if hint else ''}")
    return value


def check_probabilities(name: str, weights: Sequence[float], length: int | None = None) -> list[float]:
    values = [float(w) for w in weights]
    if length is not None and len(values) != length:
        raise ConfigError(f"{name}={values} has {len(values)} entries but the world has {length} modes")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ConfigError(f"{name}={values} has a negative or non-finite weight; weights must be >= 0")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"{name}={values} sums to {sum(values):.6g}, not 1; rescale the weights")
    return values


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {list(choices)}")
    return str(value)
