# VBench-style video dimensions (not the official VBench code): consistency, motion, per-frame quality, in %.
"""Formulas follow VBench (Huang et al. 2024) where its backbones are available and say where they differ:

* subject / background consistency: mean over frames t ≥ 1 of ½(cos(f_t, f_0) + cos(f_t, f_{t−1})) on DINO /
  CLIP image features (VBench: DINO ViT-B/16 and CLIP ViT-B/32);
* motion smoothness: odd frames rebuilt from their neighbours and compared with the real frame, score
  1 − mean|error|/255. VBench rebuilds them with the AMT interpolation network; we warp both neighbours half-way
  along classical Farneback optical flow (OpenCV, opencv-python-headless);
* dynamic degree: a video is dynamic when at least round(4·F/16) consecutive-frame pairs have mean top-5 % flow
  magnitude above 6·min(H, W)/256 (VBench's rule), with Farneback flow instead of RAFT; the score is the
  percentage of dynamic videos;
* aesthetic / imaging quality: the mean of a per-frame image scorer (LAION aesthetic / 10 for aesthetic
  quality, as VBench does). VBench's imaging quality uses MUSIQ, which needs pyiqa (and so torchvision, which does
  not load with the pinned torch); any per-frame Scorer in [0, 1] plugs in, and its output is named
  `imaging_quality_<scorer.name>` — the default is imaging_quality.LaplacianQuality, a classical stand-in named
  `laplacian_not_musiq`; only a scorer named `musiq` fills the paper's Imaging column.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from w2sd.evaluation.scorer import Scorer
from w2sd.evaluation.similarity import Embedder
from w2sd.validation import ConfigError


def split_strip(strip: Image.Image, frames: int) -> list[Image.Image]:
    """Frames of a video stored as one horizontal PNG strip of equal-width frames."""
    if frames < 1 or strip.width % frames:
        raise ConfigError(f"strip of width {strip.width} cannot hold frames={frames} equal-width frames")
    w = strip.width // frames
    return [strip.crop((i * w, 0, (i + 1) * w, strip.height)) for i in range(frames)]


def feature_consistency(features: torch.Tensor) -> float:
    """VBench consistency of (F, d) frame features, in %: ½(cos to first frame + cos to previous frame)."""
    if features.shape[0] < 2:
        raise ConfigError("consistency needs a video of at least 2 frames")
    f = torch.nn.functional.normalize(features.double(), dim=-1)
    to_first = (f[1:] * f[:1]).sum(-1)
    to_prev = (f[1:] * f[:-1]).sum(-1)
    return float(100.0 * (0.5 * (to_first + to_prev)).clamp(min=0).mean())


def _gray(frame: Image.Image) -> np.ndarray:
    return np.asarray(frame.convert("L"), dtype=np.uint8)


def optical_flow(a: Image.Image, b: Image.Image) -> np.ndarray:
    """Dense Farneback flow (H, W, 2) with a(y) ≈ b(y + flow(y))."""
    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, pyr_scale=0.5, levels=3, winsize=15,
                                        iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _warp(frame: np.ndarray, flow: np.ndarray, fraction: float) -> np.ndarray:
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(frame, xs - fraction * flow[..., 0], ys - fraction * flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def motion_smoothness(frames: Sequence[Image.Image]) -> float:
    """In %: how well each odd frame is predicted by flow-warping its two neighbours half-way."""
    if len(frames) < 3:
        raise ConfigError("motion smoothness needs a video of at least 3 frames")
    rgb = [np.asarray(f.convert("RGB"), dtype=np.float32) for f in frames]
    errors = []
    for t in range(1, len(frames) - 1, 2):
        forward = optical_flow(frames[t - 1], frames[t + 1])
        backward = optical_flow(frames[t + 1], frames[t - 1])
        middle = 0.5 * (_warp(rgb[t - 1], forward, 0.5) + _warp(rgb[t + 1], backward, 0.5))
        errors.append(np.abs(middle - rgb[t]).mean())
    return float(100.0 * (1.0 - np.mean(errors) / 255.0))


def is_dynamic(frames: Sequence[Image.Image]) -> bool:
    """VBench's dynamic-degree rule on Farneback flow magnitudes."""
    if len(frames) < 2:
        raise ConfigError("dynamic degree needs a video of at least 2 frames")
    threshold = 6.0 * min(frames[0].height, frames[0].width) / 256.0
    needed = round(4 * len(frames) / 16.0)
    moving = 0
    for a, b in zip(frames[:-1], frames[1:]):
        magnitude = np.linalg.norm(optical_flow(a, b), axis=-1).ravel()
        top = np.sort(magnitude)[-max(1, int(0.05 * magnitude.size)):]
        moving += int(top.mean() > threshold)
    return moving >= needed


def per_frame_quality(frames: Sequence[Image.Image], prompt: str, scorer: Scorer) -> float:
    """Mean per-frame score × 100 (a [0, 1] scorer as %)."""
    return float(100.0 * scorer.score(list(frames), [prompt] * len(frames)).mean())


def video_metrics(frames: Sequence[Image.Image], prompt: str, *, subject: Embedder | None = None,
                  background: Embedder | None = None, imaging: Scorer | None = None) -> dict[str, float]:
    """The VBench-style dimensions computable with the backbones given (flow-based ones need none). Aesthetic
    quality is not here: it is the run's own per-frame aesthetic score / 10 (experiments/evaluate.py)."""
    out = {"motion_smoothness": motion_smoothness(frames), "dynamic_degree": 100.0 * is_dynamic(frames)}
    if subject is not None:
        out["subject_consistency"] = feature_consistency(subject(frames))
    if background is not None:
        out["background_consistency"] = feature_consistency(background(frames))
    if imaging is not None:
        out[f"imaging_quality_{imaging.name}"] = per_frame_quality(frames, prompt, imaging)
    return out
