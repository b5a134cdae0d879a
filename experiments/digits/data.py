# The digits world's data: sklearn's 8×8 digits, a fixed stratified split, class subsets and moving-digit clips.
"""Images are scaled from 0…16 to [−1, 1] (background −1). The split is stratified and seeded, so every model and
the classifier see the same training images and the held-out set is never trained on."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from w2sd.validation import ConfigError

NUM_CLASSES = 10
IMAGE_SIZE = 8


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    return pixels / 8.0 - 1.0


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Model range [−1, 1] → intensities in [0, 1] (clamped), the form the classifier and metrics read."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # [N, 1, 8, 8] in model range
    labels: torch.Tensor  # [N]


def check_class_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < NUM_CLASSES:
        raise ConfigError(f"{name}={value!r} is not a digit class; use an integer in 0–9")
    return value


def digits_split(part: str, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The `train` or `test` part of a per-class seeded split (each class loses the same fraction to test)."""
    if part not in ("train", "test"):
        raise ConfigError(f"split part={part!r} must be 'train' or 'test'")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction} must be in (0, 1), e.g. 0.2")
    images, labels = _digits()
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * idx.size))
        chosen.append(idx[:n_test] if part == "test" else idx[n_test:])
    index = np.sort(np.concatenate(chosen))
    x = to_model_range(torch.from_numpy(images[index])).unsqueeze(1)
    return Split(x, torch.from_numpy(labels[index]))


def all_digits() -> Split:
    """All 1,797 images (both parts), the real reference sets of the Fréchet distances."""
    images, labels = _digits()
    return Split(to_model_range(torch.from_numpy(images)).unsqueeze(1), torch.from_numpy(labels))


def class_counts(split: Split) -> dict[int, int]:
    return {c: int((split.labels == c).sum()) for c in range(NUM_CLASSES)}


def class_subset(split: Split, counts: dict[int, int]) -> Split:
    """The first `counts[c]` images of each class c, in split order; rejects unknown classes and empty or oversized
    class splits before any work."""
    if not counts:
        raise ConfigError("class counts are empty; name at least one digit class, e.g. {0: 144, 7: 72}")
    available = class_counts(split)
    picks = []
    for c, n in counts.items():
        check_class_id("class", c)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"class {c} gets {n!r} training images; each class split needs at least 1 "
                              f"(raise the count or lower the ratio)")
        if n > available[c]:
            raise ConfigError(f"class {c} asks for {n} images but the split holds {available[c]}; lower the count")
        picks.append(torch.nonzero(split.labels == c).flatten()[:n])
    index = torch.sort(torch.cat(picks)).values
    return Split(split.images[index], split.labels[index])


def ratio_counts(split: Split, majority: int, minority: int, ratio: float) -> dict[int, int]:
    """All available majority images and round(n_majority / ratio) minority images (A:B = ratio:1)."""
    check_class_id("majority", majority)
    check_class_id("minority", minority)
    if majority == minority:
        raise ConfigError(f"majority and minority are both class {majority}; pick two different digits")
    if not ratio > 0:
        raise ConfigError(f"ratio={ratio} must be > 0 (A:B = ratio:1)")
    n_a = class_counts(split)[majority]
    return {majority: n_a, minority: int(round(n_a / ratio))}


# -- the miniature video world: a digit translating at constant integer velocity ----------------------------------
VELOCITIES = tuple((vy, vx) for vy in (-1, 0, 1) for vx in (-1, 0, 1))


@dataclass(frozen=True)
class Clips:
    video: torch.Tensor  # [N, 1, F, S, S] in model range
    labels: torch.Tensor  # [N]
    velocity: torch.Tensor  # [N, 2] (dy, dx) pixels per frame
    start: torch.Tensor  # [N, 2] top-left corner of the digit in frame 0


def _start_range(v: int, frames: int, size: int) -> tuple[int, int]:
    free = size - IMAGE_SIZE
    lo, hi = max(0, -(frames - 1) * v), min(free, free - (frames - 1) * v)
    if lo > hi:
        raise ConfigError(f"a digit moving {v} px/frame leaves a {size}px canvas within {frames} frames; "
                          f"use more canvas (video.size) or fewer frames")
    return lo, hi


def check_clip_canvas(frames: int, size: int, velocities: Sequence[tuple[int, int]] = VELOCITIES) -> None:
    """Every velocity must keep the whole digit on the canvas for all frames (ConfigError naming the fix)."""
    for v in sorted({c for velocity in velocities for c in velocity}, reverse=True):
        _start_range(v, frames, size)


def moving_digit_clips(split: Split, n: int, generator: torch.Generator, frames: int = 8, size: int = 16,
                       velocities: Sequence[tuple[int, int]] = VELOCITIES) -> Clips:
    """n clips: a random training digit pasted on a blank size×size canvas at start + f·velocity for f < frames,
    velocity uniform over `velocities`, start uniform over the positions that keep the digit inside every frame."""
    if n < 1:
        raise ConfigError(f"number of clips n={n} must be >= 1")
    pick = torch.randint(0, split.labels.shape[0], (n,), generator=generator)
    vel = torch.tensor(velocities, dtype=torch.long)[torch.randint(0, len(velocities), (n,), generator=generator)]
    video = torch.full((n, 1, frames, size, size), -1.0)
    start = torch.zeros(n, 2, dtype=torch.long)
    for k in range(n):
        for axis in range(2):
            lo, hi = _start_range(int(vel[k, axis]), frames, size)
            start[k, axis] = int(torch.randint(lo, hi + 1, (1,), generator=generator))
        for f in range(frames):
            y, x = (start[k] + f * vel[k]).tolist()
            video[k, 0, f, y:y + IMAGE_SIZE, x:x + IMAGE_SIZE] = split.images[pick[k], 0]
    return Clips(video, split.labels[pick], vel, start)
