# VBench-style clip metrics that are exact in the moving-digit world: they read the digit's intensity centroid.
"""Per clip: the centroid c_f of each frame's intensities; velocity v_f = c_{f+1} − c_f.
- dynamic_degree: mean |v_f| in pixels per frame (VBench's dynamic degree uses optical flow; here motion is exact).
- velocity_jitter: mean |v_f − mean_f v_f| (0 for constant velocity; VBench's motion smoothness, inverted).
- class_consistency: share of frames whose classifier label equals the clip's most common label.
- frame_fd: Fréchet distance of the 8×8 crops around each frame's centroid (`frame_crops`) to the same crops of
  real clips (the evaluator's reference set, see VideoExperiment.setup_evaluation). Comparing crops with crops
  means a real clip pays no cropping misalignment: real clips score only the finite-sample floor of the Fréchet
  distance (which is large for a few dozen clips in 64-d features, and is reported beside the models).
A real clip scores dynamic_degree = its speed, velocity_jitter = 0, class_consistency ≈ classifier accuracy."""
from __future__ import annotations

import torch

from experiments.digits.data import IMAGE_SIZE, to_unit_range
from experiments.digits.evaluator import Evaluator


def centroids(video: torch.Tensor) -> torch.Tensor:
    """[N, 1, F, S, S] (model range) → [N, F, 2] intensity centroids (y, x); a blank frame gives the centre."""
    v = to_unit_range(video.float())[:, 0]
    size = v.shape[-1]
    grid = torch.arange(size, dtype=torch.float32)
    mass = v.sum((2, 3)).clamp_min(1e-6)
    cy = (v * grid.view(1, 1, -1, 1)).sum((2, 3)) / mass
    cx = (v * grid.view(1, 1, 1, -1)).sum((2, 3)) / mass
    return torch.stack([cy, cx], -1)


def centre_crops(video: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """8×8 crops of every frame, placed so the crop centre is nearest the centroid: [N·F, 1, 8, 8]."""
    n, _, frames, size, _ = video.shape
    top_left = (centre - (IMAGE_SIZE - 1) / 2).round().long().clamp(0, size - IMAGE_SIZE)
    crops = [video[k, :, f, y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
             for k in range(n) for f in range(frames) for y, x in [top_left[k, f].tolist()]]
    return torch.stack(crops)


def frame_crops(video: torch.Tensor) -> torch.Tensor:
    """The crops the frame metrics read: each frame's 8×8 crop at its own centroid, [N·F, 1, 8, 8]."""
    return centre_crops(video, centroids(video))


def clip_metrics(video: torch.Tensor, evaluator: Evaluator) -> dict[str, float]:
    """The four metrics above; `evaluator`'s reference set must be `frame_crops` of real clips."""
    c = centroids(video)
    v = c.diff(dim=1)
    crops = centre_crops(video, c)
    labels = evaluator.predict(crops).view(video.shape[0], -1)
    majority = labels.mode(dim=1).values
    return {
        "dynamic_degree": float(v.norm(dim=-1).mean()),
        "velocity_jitter": float((v - v.mean(1, keepdim=True)).norm(dim=-1).mean()),
        "class_consistency": float((labels == majority[:, None]).double().mean()),
        "frame_fd": evaluator.frechet_distance(crops),
    }
