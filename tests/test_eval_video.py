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


def test_laplacian_imaging_quality_ranks_sharp_above_blurred_and_noisy():
    from PIL import ImageFilter

    from w2sd.evaluation.imaging_quality import LaplacianQuality

    rng = np.random.default_rng(3)
    scenes = []
    for _ in range(3):  # flat-coloured rectangles: sharp edges, no noise
        canvas = np.full((96, 96, 3), 100, dtype=np.uint8)
        for _ in range(8):
            x, y = rng.integers(0, 80, 2)
            w, h = rng.integers(6, 20, 2)
            canvas[y:y + h, x:x + w] = rng.integers(0, 256, 3)
        scenes.append(Image.fromarray(canvas))
    noisy = [Image.fromarray(np.clip(np.asarray(s, dtype=np.float64) + rng.normal(0, 20, (96, 96, 3)), 0, 255)
                             .astype(np.uint8)) for s in scenes]
    scorer = LaplacianQuality()
    sharp = scorer.score(scenes, [""] * 3)
    blur1 = scorer.score([s.filter(ImageFilter.GaussianBlur(1)) for s in scenes], [""] * 3)
    blur3 = scorer.score([s.filter(ImageFilter.GaussianBlur(3)) for s in scenes], [""] * 3)
    assert np.all((sharp > blur1) & (blur1 > blur3) & (sharp > scorer.score(noisy, [""] * 3)))
    assert np.all((0 <= blur3) & (sharp <= 1)) and scorer.score([Image.new("RGB", (32, 32))], [""])[0] == 0.0
    metrics = video_metrics(square_clip(2), "a square", imaging=scorer)
    assert 0 < metrics["imaging_quality_laplacian_not_musiq"] <= 100 and "imaging_quality" not in metrics


def test_feature_consistency_of_rotating_frame_features_is_the_closed_form():
    """Unit features at angles 0, θ, 2θ, 3θ (scaled by arbitrary norms): to-first cosines cos(kθ), to-previous
    cosines cos θ; the VBench score is 100 · mean_k max(0, ½(cos kθ + cos θ))."""
    theta = 0.5
    angles = theta * np.arange(4)
    norms = np.array([1.0, 3.0, 0.5, 2.0])
    f = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1) * norms[:, None])
    expected = 100 * np.mean(np.maximum(0, 0.5 * (np.cos(theta * np.arange(1, 4)) + np.cos(theta))))
    assert feature_consistency(f) == pytest.approx(expected, rel=1e-12)
    assert feature_consistency(f[:2]) == pytest.approx(100 * np.cos(theta), rel=1e-12)  # two frames are enough
    with pytest.raises(ConfigError, match="at least 2 frames"):
        feature_consistency(f[:1])
