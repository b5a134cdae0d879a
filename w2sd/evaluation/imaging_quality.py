# Classical no-reference imaging quality in [0, 1] (edge sharpness × noise penalty): a stand-in, not VBench's MUSIQ.
"""VBench's imaging quality is MUSIQ (through pyiqa). pyiqa requires torchvision, whose wheel does not load with
the pinned CPU torch, so this repository cannot ship MUSIQ; this module is a documented classical substitute whose
outputs are named `imaging_quality_laplacian_not_musiq` so they are never mistaken for VBench numbers.

* sharpness: on the grey frame smoothed with a σ = 1 px Gaussian, the ratio of the 99th percentiles of |Laplacian|
  and |gradient|. For an edge blurred to total width σ the peak Laplacian is ∝ contrast/σ² and the peak gradient
  ∝ contrast/σ, so the ratio falls as 1/σ independently of contrast and of how many edges the frame has (a plain
  variance of the Laplacian depends on both, and rises with noise); clipped to [0, 1];
* noise: Immerkær's (1996) fast estimate σ̂ of additive Gaussian noise (a Laplacian-difference mask that cancels
  smooth structure), penalised as exp(−σ̂ / 0.02) on the [0, 1] intensity scale (σ̂ = 0.02 ≈ 5 grey levels).
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from w2sd.evaluation.scorer import Scorer

NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
NOISE_SCALE = 0.02


def edge_sharpness(gray: np.ndarray) -> float:
    """1/edge-width proxy in [0, 1] of a float grey image in [0, 1] (see the module docstring)."""
    smooth = cv2.GaussianBlur(gray, (0, 0), 1.0)
    laplacian = np.abs(cv2.Laplacian(smooth, cv2.CV_64F))
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_64F, 1, 0), cv2.Sobel(smooth, cv2.CV_64F, 0, 1)) / 8.0
    peak_gradient = np.percentile(gradient, 99)
    if peak_gradient < 1e-6:  # a flat frame has no edges to be sharp
        return 0.0
    return float(np.clip(np.percentile(laplacian, 99) / peak_gradient, 0.0, 1.0))


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkær's estimate of the noise standard deviation of a float grey image in [0, 1]."""
    h, w = gray.shape
    response = np.abs(cv2.filter2D(gray, cv2.CV_64F, NOISE_MASK)[1:-1, 1:-1]).sum()
    return float(np.sqrt(np.pi / 2) * response / (6.0 * (w - 2) * (h - 2)))


def laplacian_quality(image: Image.Image) -> float:
    gray = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    return edge_sharpness(gray) * float(np.exp(-noise_sigma(gray) / NOISE_SCALE))


class LaplacianQuality(Scorer):
    """Per-frame no-reference quality in [0, 1]; prompts are ignored. Not VBench's MUSIQ (see module docstring)."""

    name = "laplacian_not_musiq"

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([laplacian_quality(im) for im in images], dtype=torch.float64)
