# VBench-style video metrics on synthetic clips whose ordering is known: static, smooth motion, flicker.
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from w2sd.evaluation.video import feature_consistency, is_dynamic, motion_smoothness, split_strip, video_metrics
from w2sd.validation import ConfigError


def square_clip(step: int, frames: int = 8, size: int = 64) -> list[Image.Image]:
    """A textured square sliding `step` pixels per frame over a grey background."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    clip = []
    for t in range(frames):
        canvas = np.full((size, size, 3), 90, dtype=np.uint8)
        x = 4 + step * t
        canvas[24:40, x:x + 16] = texture
        clip.append(Image.fromarray(canvas))
    return clip


def test_split_strip_recovers_equal_width_frames():
    frames = square_clip(2, frames=4)
    strip = Image.new("RGB", (64 * 4, 64))
    for k, f in enumerate(frames):
        strip.paste(f, (64 * k, 0))
    assert [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(split_strip(strip, 4), frames)] == [True] * 4
    with pytest.raises(ConfigError, match="frames=3"):
        split_strip(strip, 3)


def test_consistency_formula_hand_computed():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # t=1: (1 + 1)/2 = 1; t=2: (0 + 0)/2 = 0 → mean 0.5
    assert feature_consistency(f) == pytest.approx(50.0)
    assert feature_consistency(torch.ones(5, 3)) == pytest.approx(100.0)


def test_motion_smoothness_ranks_smooth_motion_above_flicker():
    smooth = motion_smoothness(square_clip(3))
    rng = np.random.default_rng(1)
    flicker = motion_smoothness([Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
                                 for _ in range(8)])
    static = motion_smoothness(square_clip(0))
    assert static == pytest.approx(100.0, abs=1e-6) and static >= smooth > 97 > 80 > flicker


def test_dynamic_degree_uses_the_vbench_threshold():
    assert not is_dynamic(square_clip(0))
    assert is_dynamic(square_clip(5))  # 5 px/frame ≫ 6·64/256 = 1.5 px
    metrics = video_metrics(square_clip(5), "a square")
    assert set(metrics) == {"motion_smoothness", "dynamic_degree"} and metrics["dynamic_degree"] == 100.0
