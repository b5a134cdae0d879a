# Figures of the toy studies: densities/scatter per method, denoising trajectories, Δ1·Δ2 alignment.
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from toy.gmm import GaussianMixture  # noqa: E402
from w2sd.results import atomic_savefig  # noqa: E402


def save_png(fig: plt.Figure, path: Path) -> Path:
    """Tight layout, atomic PNG write, close: the one way toy and digits figures are saved."""
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


def densities_1d(samples: Mapping[str, torch.Tensor], ideal: GaussianMixture, path: Path) -> Path:
    """Histogram of each method's samples over the ideal pdf (paper Fig. 4, top row)."""
    grid = torch.linspace(-8, 8, 400, dtype=torch.float64)[:, None]
    pdf = ideal.log_prob(grid).exp()
    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 2.8), sharey=True)
    for ax, (name, x) in zip(axes, samples.items()):
        # one stairs artist, not 120 bar patches: the same picture in a fraction of the drawing time
        density, edges = np.histogram(x[:, 0].numpy(), bins=120, range=(-8, 8), density=True)
        ax.stairs(density, edges, fill=True, color="tab:blue", alpha=0.6)
        ax.plot(grid[:, 0], pdf, color="black", lw=1.2, label="ideal pdf")
        ax.set_title(name)
        ax.set_xlabel("x")
    axes[0].legend(loc="upper left", fontsize=7)
    return save_png(fig, path)


def scatter_2d(samples: Mapping[str, torch.Tensor], ideal: GaussianMixture, path: Path, max_points: int = 3000) -> Path:
    """Samples of each method over the ideal density's contours (paper Fig. 5, top row)."""
    g = torch.linspace(-8, 8, 200, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    dens = ideal.log_prob(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().reshape(200, 200)
    fig, axes = plt.subplots(1, len(samples), figsize=(3.0 * len(samples), 3.0), sharex=True, sharey=True)
    for ax, (name, x) in zip(axes, samples.items()):
        ax.contour(gx, gy, dens, levels=6, colors="black", linewidths=0.6)
        pts = x[:max_points]
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.4, color="tab:blue")
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xlim(-8, 8)
        ax.set_ylim(-8, 8)
    return save_png(fig, path)


def trajectories(paths: Mapping[str, torch.Tensor], path: Path) -> Path:
    """paths[name]: [levels, n, D]. 1D: value vs step (paper Fig. 4, bottom); 2D: planar paths (Fig. 5, bottom)."""
    fig, axes = plt.subplots(1, len(paths), figsize=(4.0 * len(paths), 3.4), sharey=True)
    for ax, (name, traj) in zip(axes, paths.items()):
        if traj.shape[-1] == 1:
            steps = torch.arange(traj.shape[0])
            for j in range(traj.shape[1]):
                ax.plot(steps, traj[:, j, 0], lw=0.8, alpha=0.7)
            ax.set_xlabel("denoising step")
            ax.set_ylabel("x")
        else:
            for j in range(traj.shape[1]):
                ax.plot(traj[:, j, 0], traj[:, j, 1], lw=0.5, alpha=0.6)
                ax.scatter(traj[-1, j, 0], traj[-1, j, 1], s=4, color="black")
            ax.set_aspect("equal")
            ax.set_xlim(-8, 8)
            ax.set_ylim(-8, 8)
        ax.set_title(name)
    return save_png(fig, path)


def delta_alignment(curves: Mapping[str, list[float]], path: Path) -> Path:
    """cos(Δ1, Δ2) and the aligned fraction along the strong trajectory, against the noise level σ."""
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.plot(curves["sigma"], curves["cos_flat"], marker="o", ms=2.5, label="cos(Δ1, Δ2), all samples")
    ax.plot(curves["sigma"], curves["aligned_frac"], marker="s", ms=2.5, label="fraction with ⟨Δ1, Δ2⟩ > 0")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("noise level σ = √((1−ᾱ)/ᾱ)")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=7)
    return save_png(fig, path)
