# Figures of the digits studies: sample grids, a PCA map of classifier features (paper Fig. 7), clip filmstrips.
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from sklearn.decomposition import PCA

from experiments.digits.data import Split, to_unit_range
from experiments.digits.evaluator import Evaluator
from toy.plots import save_png  # the shared tight-layout atomic PNG writer (also selects the Agg backend)


def image_grid(samples: Mapping[str, torch.Tensor], path: Path, per_method: int = 20) -> Path:
    """One row per method: its first `per_method` samples (shared initial noise, so columns correspond)."""
    fig, axes = plt.subplots(len(samples), 1, figsize=(per_method * 0.45, 0.6 * len(samples) + 0.2), squeeze=False)
    for ax, (name, x) in zip(axes[:, 0], samples.items()):
        row = to_unit_range(x[:per_method, 0])
        ax.imshow(torch.cat(list(row), dim=1).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_png(fig, path)


def feature_pca(samples: Mapping[str, torch.Tensor], reference: Split, evaluator: Evaluator,
                classes: Sequence[int], path: Path) -> Path:
    """2-D PCA of the classifier's penultimate features, fitted on the balanced real set; points coloured by the
    predicted class (majority, minority, other) — the digits version of the paper's t-SNE in Fig. 7."""
    real_features = evaluator.features(reference.images).numpy()
    pca = PCA(2, random_state=0).fit(real_features)
    real = pca.transform(real_features)
    fig, axes = plt.subplots(1, len(samples), figsize=(3.0 * len(samples), 3.0), squeeze=False)
    for ax, (name, x) in zip(axes[0], samples.items()):
        pts, pred = pca.transform(evaluator.features(x).numpy()), evaluator.predict(x)
        ax.scatter(real[:, 0], real[:, 1], s=3, c="lightgray", label="real A+B")
        for cls, colour in ((classes[0], "tab:blue"), (classes[1], "tab:red")):
            mask = (pred == cls).numpy()
            ax.scatter(pts[mask, 0], pts[mask, 1], s=4, c=colour, label=f"digit {cls} ({mask.mean():.0%})")
        other = ((pred != classes[0]) & (pred != classes[1])).numpy()
        ax.scatter(pts[other, 0], pts[other, 1], s=4, c="black", marker="x", label=f"other ({other.mean():.0%})")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6, loc="best")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_png(fig, path)


def filmstrips(samples: Mapping[str, torch.Tensor], path: Path, clips: int = 3) -> Path:
    """The first `clips` clips of each method, frames left to right."""
    rows = [(name, k) for name in samples for k in range(min(clips, samples[name].shape[0]))]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.1 * len(rows)), squeeze=False)
    for ax, (name, k) in zip(axes[:, 0], rows):
        frames = to_unit_range(samples[name][k, 0])
        ax.imshow(torch.cat(list(frames), dim=1).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_ylabel(f"{name} #{k}", rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_png(fig, path)
