# README tables of the miniature digits studies (experiments/digits), from results/digits_*/results.json.
from __future__ import annotations

import math
from pathlib import Path

from paper_figures.common import require_results

STUDIES = {
    "digits_dataset_gap": ("minority_fraction", "other_fraction", "fd"),
    "digits_weight_gap": ("adherence", "fd"),
    "digits_condition_gap": ("adherence", "fd"),
    "digits_video": ("dynamic_degree", "velocity_jitter", "class_consistency", "frame_fd"),
}


def with_ci(row: dict, metric: str) -> str:
    low, high = row[f"{metric}_ci"]
    return f"{row[metric]:.3f} [{low:.3f}, {high:.3f}]"


def metrics_table(res: dict, columns: tuple[str, ...]) -> str:
    lines = ["| method | " + " | ".join(columns) + " | NFE |", "|---" * (len(columns) + 2) + "|"]
    for name, row in res["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(with_ci(row, c) for c in columns) + f" | {row['nfe']} |")
    real = res["extra"].get("real")
    if real:
        lines.append("| *real clips* | " + " | ".join(f"{real[c]:.3f}" for c in columns) + " | – |")
    return "\n".join(lines)


def comparison_table(res: dict) -> str:
    lines = ["| comparison | metric | mean difference [95% CI] | wins / ties / losses (seeds) |", "|---|---|---|---|"]
    for pair, by_metric in res["extra"]["comparisons"].items():
        for metric, c in by_metric.items():
            lines.append(f"| {pair.replace('_vs_', ' − ')} | {metric} | {c['mean']:+.3f} [{c['ci_low']:+.3f}, "
                         f"{c['ci_high']:+.3f}] | {c['wins']} / {c['ties']} / {c['losses']} |")
    return "\n".join(lines)


def alignment_line(res: dict) -> str:
    curve = res["extra"].get("delta_alignment")
    if not curve:
        return ""
    cos = [c for c in curve["cos_flat"] if c is not None and not math.isnan(c)]
    third = max(1, len(cos) // 3)
    return (f"Δ1·Δ2 cosine along {len(cos)} strong-DDIM levels: mean {sum(cos) / len(cos):+.3f}, positive at "
            f"{sum(c > 0 for c in cos)}/{len(cos)} levels; high-noise third {sum(cos[:third]) / third:+.3f}, "
            f"low-noise third {sum(cos[-third:]) / third:+.3f} (curve: `delta_alignment.png`).")


def header(name: str, res: dict) -> str:
    cfg, extra = res["config"], res["extra"]
    parts = [f"T = {cfg['sampler']['T']}, λ = {extra['lam']}, inversion `{cfg['sampler']['inversion']}`",
             f"{cfg['samples_per_seed']} samples × {extra['num_seeds']} seeds (mean [95% bootstrap CI over seeds])",
             f"evaluator held-out accuracy {extra['classifier']['test_accuracy']:.4f}"]
    if name == "digits_dataset_gap":
        s = cfg["study"]
        parts.insert(0, f"majority digit {s['majority']}, minority {s['minority']}; A:B = {s['ratios']['strong']}:1 "
                        f"strong, {s['ratios']['weak']}:1 weak, {s['ratios']['ideal']}:1 ideal; {s['steps']} steps")
    elif name == "digits_weight_gap":
        steps = cfg["digits"]["conditional_steps"]
        parts.insert(0, "; ".join(f"{role} = {snap} ({steps[snap]} steps)" for role, snap in cfg["models"].items())
                     + f"; CFG {cfg['guidance']}")
    elif name == "digits_condition_gap":
        parts.insert(0, f"strong CFG {cfg['guidance']['strong']}, weak CFG {cfg['guidance']['weak']} on the "
                        f"`{cfg['snapshot']}` net")
    else:
        parts.insert(0, "; ".join(f"{role} = {snap} ({cfg['video_steps'][snap]} steps)"
                                  for role, snap in cfg["models"].items())
                     + f"; {cfg['video']['frames']} frames of {cfg['video']['size']}²")
    return "*" + "; ".join(parts) + ".*"


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    blocks = {}
    for name, columns in STUDIES.items():
        res = require_results(results_root, name)
        body = [header(name, res), metrics_table(res, columns), comparison_table(res)]
        line = alignment_line(res)
        blocks[name] = "\n\n".join(body + ([line] if line else []))
    return blocks
