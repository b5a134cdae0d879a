# VBench-style video metrics on synthetic clips whose ordering is known: static, smooth motion, flicker.
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from w2sd.evaluation.scorer import Scorer
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
    assert np.array_equal(np.asarray(split_strip(strip, 1)[0]), np.asarray(strip))  # a one-frame strip is an image


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


def grey_clip(levels: list[int], size: int = 32) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (v, v, v)) for v in levels]


def test_motion_smoothness_is_the_closed_form_on_flat_frames():
    """Flat frames have zero flow, so odd frame t is predicted as ½(frame t−1 + frame t+1); only odd frames count."""
    assert motion_smoothness(grey_clip([100, 130, 100])) == pytest.approx(100 * (1 - 30 / 255), rel=1e-6)
    # odd frames 1 and 3 mispredicted by 40 and 10; even frame 2 (a wrong index would score it) by |120 − 100|
    five = grey_clip([100, 140, 100, 100, 120])
    assert motion_smoothness(five) == pytest.approx(100 * (1 - 25 / 255), rel=1e-6)
    # neighbours 80 and 120 average to the middle frame exactly: a predictor weighting them unequally fails
    assert motion_smoothness(grey_clip([80, 100, 120])) == pytest.approx(100.0, abs=1e-6)
    with pytest.raises(ConfigError, match="at least 3 frames"):
        motion_smoothness(five[:2])


def smooth_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    t = gaussian_filter(rng.normal(size=(h, w)), 2.0)
    return ((t - t.min()) / (t.max() - t.min()) * 255).astype(np.uint8)


def test_optical_flow_sign_and_axes_follow_the_documented_convention():
    """b is a shifted right by 3 px and down by 1 px, so a(y) = b(y + (3, 1)): flow ≈ (+3, +1) as (x, y)."""
    from w2sd.evaluation.video import optical_flow

    base = smooth_texture(80, 80)
    a = Image.fromarray(base[10:70, 10:70])
    b = Image.fromarray(base[9:69, 7:67])
    flow = optical_flow(a, b)[15:45, 15:45]
    assert np.median(flow[..., 0]) == pytest.approx(3.0, abs=0.3)
    assert np.median(flow[..., 1]) == pytest.approx(1.0, abs=0.3)


def test_warp_moves_a_frame_by_the_given_fraction_of_the_flow_along_the_right_axes():
    from w2sd.evaluation.video import _warp

    frame = smooth_texture(40, 48).astype(np.float32)
    flow = np.zeros((40, 48, 2), dtype=np.float32)
    flow[..., 0] = 4.0  # x: half-way is 2 px right
    assert np.array_equal(_warp(frame, flow, 0.5)[:, 2:], frame[:, :-2])
    assert np.array_equal(_warp(frame, flow, 0.5)[:, :2], np.repeat(frame[:, :1], 2, 1))  # borders replicated
    flow[..., 0], flow[..., 1] = 0.0, 6.0  # y: half-way is 3 px down
    assert np.array_equal(_warp(frame, flow, 0.5)[3:], frame[:-3])
    flow[..., 1] = 3.0  # half-way is 1.5 px down: bilinear, the mean of the rows 1 and 2 px above
    np.testing.assert_allclose(_warp(frame, flow, 0.5)[2:], 0.5 * (frame[1:-1] + frame[:-2]), atol=0.02)


def jump_clip(jumps: set[int], frames: int = 8, h: int = 64, w: int = 64, size: int = 40) -> list[Image.Image]:
    """A smooth texture that moves 5 px right between frames t−1 and t for t in `jumps`, still otherwise."""
    base = smooth_texture(h + 20, w + 60)
    clip, x = [], 10
    for t in range(frames):
        x += 5 * (t in jumps)
        canvas = np.full((h, w), 128, dtype=np.uint8)
        canvas[(h - size) // 2:(h + size) // 2, (w - size) // 2:(w + size) // 2] = base[10:10 + size, x:x + size]
        clip.append(Image.fromarray(canvas).convert("RGB"))
    return clip


def test_dynamic_degree_needs_round_4f_over_16_moving_pairs():
    # 8 frames → round(4·8/16) = 2 moving pairs needed; 16 frames → 4
    assert not is_dynamic(jump_clip({3}))
    assert is_dynamic(jump_clip({3, 7}))  # the last pair counts
    assert not is_dynamic(jump_clip({2}, frames=6)) and is_dynamic(jump_clip({2, 4}, frames=6))  # round(1.5) = 2
    assert not is_dynamic(jump_clip({2, 5, 9}, frames=16))
    assert is_dynamic(jump_clip({2, 5, 9, 13}, frames=16))
    with pytest.raises(ConfigError, match="at least 2 frames"):
        is_dynamic(jump_clip(set(), frames=1))


def test_motion_below_the_threshold_is_not_dynamic():
    """A texture moving ~1 px per frame on 64×64 frames stays under 6·64/256 = 1.5 px."""
    base = smooth_texture(64, 80)
    assert not is_dynamic([Image.fromarray(base[:, t:t + 64]).convert("RGB") for t in range(8)])


def test_dynamic_degree_threshold_uses_the_shorter_side():
    """64×256 frames: threshold 6·64/256 = 1.5 px (the longer side would give 6 px); the texture moves ~2.5 px."""
    base = smooth_texture(64, 320)
    clip = [Image.fromarray(base[:, 30 + round(2.5 * t):286 + round(2.5 * t)]).convert("RGB") for t in range(4)]
    assert is_dynamic(clip)


class MeanGrey(Scorer):
    """A [0, 1] stand-in per-frame scorer: mean grey level / 255 (prompt ignored)."""

    name = "meangrey"

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size, "cpu")
        self.prompts_seen: list[str] = []  # per instance: a class-level list would carry over between runs

    def score_batch(self, images, prompts):
        self.prompts_seen += list(prompts)
        return torch.tensor([np.asarray(im.convert("L"), dtype=np.float64).mean() / 255 for im in images])


def test_video_metrics_names_each_dimension_after_its_backbone():
    clip = grey_clip([51, 102, 153, 204])
    subject = lambda frames: torch.tensor([[1.0, 0.0]] * (len(frames) - 1) + [[0.0, 1.0]])  # noqa: E731
    background = lambda frames: torch.ones(len(frames), 3)  # noqa: E731
    imaging = MeanGrey(batch_size=3)
    m = video_metrics(clip, "p", subject=subject, background=background, imaging=imaging)
    assert imaging.prompts_seen == ["p"] * 4
    assert m["subject_consistency"] == pytest.approx(100 * 2 / 3)  # pairs: (1+1)/2, (1+1)/2, (0+0)/2
    assert m["background_consistency"] == pytest.approx(100.0)
    assert m["imaging_quality_meangrey"] == pytest.approx(100 * (0.2 + 0.4 + 0.6 + 0.8) / 4)
    assert m["dynamic_degree"] == 0.0 and set(m) == {"motion_smoothness", "dynamic_degree", "subject_consistency",
                                                      "background_consistency", "imaging_quality_meangrey"}


def reference_quality(gray: np.ndarray) -> float:
    """LaplacianQuality's documented formula written with scipy.ndimage (mirror borders = OpenCV's default)."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(gray, 1.0, mode="mirror", truncate=4.0)
    laplacian = np.abs(ndimage.laplace(smooth, mode="mirror"))
    gradient = np.hypot(ndimage.sobel(smooth, 1, mode="mirror"), ndimage.sobel(smooth, 0, mode="mirror")) / 8.0
    sharp = np.clip(np.percentile(laplacian, 99) / np.percentile(gradient, 99), 0, 1)
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = np.abs(ndimage.correlate(gray, mask, mode="mirror")[1:-1, 1:-1])
    sigma = np.sqrt(np.pi / 2) * response.sum() / (6.0 * response.size)
    return float(sharp * np.exp(-sigma / 0.02))


def test_laplacian_quality_matches_an_independent_scipy_computation_on_non_square_frames():
    from w2sd.evaluation.imaging_quality import LaplacianQuality

    rng = np.random.default_rng(7)
    canvas = np.full((48, 80, 3), 60, dtype=np.uint8)
    canvas[10:30, 15:50] = (200, 40, 90)
    canvas[20:44, 55:75] = (20, 220, 140)
    noisy = np.clip(canvas + rng.normal(0, 3, canvas.shape), 0, 255).astype(np.uint8)
    images = [Image.fromarray(canvas), Image.fromarray(noisy)]
    expected = [reference_quality(np.asarray(im.convert("L"), dtype=np.float64) / 255.0) for im in images]
    assert 0.05 < expected[1] < expected[0] < 1
    np.testing.assert_allclose(LaplacianQuality().score(images, ["", ""]), expected, rtol=1e-6)


def test_noise_sigma_estimates_the_standard_deviation_of_gaussian_noise_and_ignores_linear_ramps():
    from w2sd.evaluation.imaging_quality import noise_sigma

    rng = np.random.default_rng(0)
    assert noise_sigma(0.5 + rng.normal(0, 0.05, (200, 300))) == pytest.approx(0.05, rel=0.03)
    ys, xs = np.mgrid[0:60, 0:90]
    assert noise_sigma(0.2 + 0.003 * xs + 0.002 * ys) == pytest.approx(0.0, abs=1e-12)


def test_edge_sharpness_is_clipped_to_one_on_single_pixel_dots():
    """Isolated dots blurred by σ = 1 px have a Laplacian peak above the gradient peak (ratio > 1 by the scipy
    reference): the score saturates at 1."""
    from scipy import ndimage

    from w2sd.evaluation.imaging_quality import edge_sharpness

    dots = np.zeros((40, 56))
    dots[4::8, 4::8] = 1.0
    smooth = ndimage.gaussian_filter(dots, 1.0, mode="mirror", truncate=4.0)
    gradient = np.hypot(ndimage.sobel(smooth, 1, mode="mirror"), ndimage.sobel(smooth, 0, mode="mirror")) / 8.0
    assert np.percentile(np.abs(ndimage.laplace(smooth, mode="mirror")), 99) / np.percentile(gradient, 99) > 1.1
    assert edge_sharpness(dots) == 1.0


def test_motion_smoothness_follows_a_translation_far_better_than_blending_the_neighbours():
    """A sinusoid sliding 3 px per frame: warping both neighbours half-way along their flow rebuilds the middle frame
    with under half the error of the plain mean of the neighbours; a wrong flow pair or fraction does worse than it."""
    x = np.arange(128)
    shade = 0.8 + 0.2 * np.cos(2 * np.pi * np.arange(64) / 64)[:, None]
    frames = [np.clip((127.5 + 100 * np.sin(2 * np.pi * (x - 3 * t) / 32))[None, :] * shade, 0, 255).astype(np.uint8)
              for t in range(3)]
    clip = [Image.fromarray(f).convert("RGB") for f in frames]
    rgb = [np.asarray(c, dtype=np.float64) for c in clip]
    blend_error = 100 * np.abs(0.5 * (rgb[0] + rgb[2]) - rgb[1]).mean() / 255
    assert 100 - motion_smoothness(clip) < 0.5 * blend_error


def test_scorer_batches_of_one_are_allowed_and_of_zero_refused():
    assert MeanGrey(batch_size=1).score(grey_clip([51, 102, 153]), ["p"] * 3) == pytest.approx([0.2, 0.4, 0.6])
    with pytest.raises(ConfigError, match=r"^batch_size=0 must be >= 1$"):
        MeanGrey(batch_size=0)
