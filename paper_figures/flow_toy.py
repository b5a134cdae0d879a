# The toy worlds on the VP/DDIM grid and on the rectified-flow grid side by side (results/toy_gmm*, toy_gmm_flow*).
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.common import require_results
from paper_figures.sweep_results import save_figure

METHODS = ("ideal", "weak", "strong", "w2sd", "s2wd", "autoguidance", "resampling")
WORLDS = {"1D": ("toy_gmm", "toy_gmm_flow", 0.5, "left"), "2D": ("toy_gmm_2d", "toy_gmm_flow_2d", 0.25, "bottom-left")}


def shares(results_root: Path) -> dict[str, dict[str, dict[str, float]]]:
    """world → grid (vp / flow) → method → share of the target (under-represented) mode."""
    return {world: {grid: {m: row["target_mode_weight"] for m, row in
                           require_results(results_root, name)["metrics"].items()}
                    for grid, name in (("vp", vp), ("flow", flow))}
            for world, (vp, flow, _, _) in WORLDS.items()}


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    data = shares(results_root)
    fig, axes = plt.subplots(1, len(WORLDS), figsize=(5.2 * len(WORLDS), 3.2), squeeze=False)
    for ax, (world, (_, _, ideal, mode)) in zip(axes[0], WORLDS.items()):
        xs = range(len(METHODS))
        for offset, (grid, label) in ((-0.2, ("vp", "VP / DDIM")), (0.2, ("flow", "rectified flow / Euler"))):
            ax.bar([x + offset for x in xs], [data[world][grid][m] for m in METHODS], width=0.4, label=label)
        ax.axhline(ideal, color="k", lw=0.8, ls="--", label=f"ideal {ideal:g}")
        ax.set_xticks(list(xs), METHODS, rotation=30, fontsize=7)
        ax.set_title(f"{world}: {mode} mode share, T = 50, λ = 49")
    axes[0][0].legend(fontsize=7)
    png = save_figure(fig, out_dir, "toy_vp_vs_flow", ylabel="share of the under-represented mode")
    rows = ["| method | " + " | ".join(f"{w} VP | {w} flow" for w in WORLDS) + " |",
            "|---|" + "---|---|" * len(WORLDS)]
    for m in METHODS:
        rows.append(f"| {m} | " + " | ".join(f"{data[w]['vp'][m]:.4f} | {data[w]['flow'][m]:.4f}" for w in WORLDS)
                    + " |")
    table = ("*Share of the under-represented mode (ideal: 1D 0.5, 2D 0.25), exact scores / velocities, "
             "10,000 samples per method from the same x_T, T = 50, λ = 49; VP = `toy_gmm`, `toy_gmm_2d` "
             "(DDPM linear betas, DDIM), flow = `toy_gmm_flow`, `toy_gmm_flow_2d` (FlowMatchEuler grid, shift 1).*\n\n"
             + "\n".join(rows) + f"\n\n![toy_vp_vs_flow]({png})")
    return {"toy_flow_vs_vp": table, "toy_flow_summary": summary(data)}


def summary(data: dict) -> str:
    """The VP vs flow comparison in words, from the numbers (whichever way they come out)."""
    lines = []
    for world, (_, _, ideal, _) in WORLDS.items():
        vp, flow = data[world]["vp"], data[world]["flow"]
        err_vp, err_flow = vp["w2sd"] - ideal, flow["w2sd"] - ideal
        further = "further past" if abs(err_flow) > abs(err_vp) and err_flow * err_vp > 0 else \
            "closer to" if abs(err_flow) < abs(err_vp) else "as far from"
        lines.append(
            f"- {world}: strong {vp['strong']:.3f} (VP) / {flow['strong']:.3f} (flow); W2SD {vp['w2sd']:.3f} → "
            f"{flow['w2sd']:.3f}, ideal {ideal:g}: on the flow grid W2SD lands {further} the ideal "
            f"({err_vp:+.3f} VP, {err_flow:+.3f} flow); autoguidance w = 1: {vp['autoguidance']:.3f} / "
            f"{flow['autoguidance']:.3f}; S2WD {vp['s2wd']:.3f} / {flow['s2wd']:.3f}.")
    return "\n".join(lines)

