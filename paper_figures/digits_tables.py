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
            counts = (f"{c['wins']} / {c['ties']} / {c['losses']}" if "wins" in c
                      else f"no better direction: {c['higher']} higher / {c['equal']} equal / {c['lower']} lower")
            lines.append(f"| {pair.replace('_vs_', ' − ')} | {metric} | {c['mean']:+.3f} [{c['ci_low']:+.3f}, "
                         f"{c['ci_high']:+.3f}] | {counts} |")
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
        # the training run's own thread count: a study may sample with another than the one that trained its nets
        nets, threads = extra["nets"], extra["nets"]["strong"]["train_threads"]
        parts.insert(0, "; ".join(f"{role} = {snap} ({cfg['video_steps'][snap]} steps)"
                                  for role, snap in cfg["models"].items())
                     + f"; {cfg['video']['frames']} frames of {cfg['video']['size']}²; one training run of "
                       f"{nets['strong']['train_time_s'] / 60:.1f} min wall ({nets['strong']['train_cpu_s'] / 60:.1f}"
                       f" min CPU, {'one thread' if threads == 1 else f'{threads} threads'}) gives both nets"
                     + (f"; class-conditional (clip i asks for digit i mod 10), CFG {cfg['guidance']}"
                        if cfg.get("conditional") else "; unconditional"))
    return "*" + "; ".join(parts) + ".*"


VIDEO_DIMENSIONS = {"dynamic_degree": "dynamic degree", "velocity_jitter": "velocity jitter (motion smoothness "
                    "inverted)", "class_consistency": "class consistency", "frame_fd": "frame FD (frame quality)"}
# paper Table 12 (AnimateDiff): W2SD lowers the dynamic degree while raising smoothness, consistency and quality
PAPER_DIRECTION = {"dynamic_degree": "lowers", "velocity_jitter": "lowers", "class_consistency": "raises",
                   "frame_fd": "lowers"}


def direction(c: dict) -> str:
    """How W2SD moves a metric against its baseline: the sign of the paired mean when its CI excludes zero."""
    if c["ci_low"] > 0:
        return "raises"
    if c["ci_high"] < 0:
        return "lowers"
    return "does not move (CI spans 0)"


def sampled_like_the_yardstick(steps: dict, yardstick: dict) -> str:
    """The method of the steps study that samples the strong clip net with the image world's number of steps."""
    wanted = yardstick["config"]["sampler"]["T"]
    names = [name for name, t in steps["extra"]["method_T"].items() if t == wanted]
    if not names:
        raise ValueError(f"results/{steps['config']['name']} has no method at T = {wanted} (the T of "
                         f"{yardstick['config']['name']}); add one to conf/experiment/{steps['config']['name']}.yaml")
    return names[0]


def frame_target(res: dict, steps: dict, yardstick: dict) -> dict:
    """The strong clip net's pooled frame FD at the video study's T and at the image world's T, against the target
    1.5 × the image world's strong fd, with a meets/misses verdict for each."""
    target = 1.5 * yardstick["metrics"]["strong"]["fd"]
    like = sampled_like_the_yardstick(steps, yardstick)
    out = {"target": target, "T": res["config"]["sampler"]["T"], "T_image": yardstick["config"]["sampler"]["T"],
           "study": res["extra"]["frame_fd_pooled"]["strong"], "like": steps["extra"]["frame_fd_pooled"][like]}
    out.update({f"{k}_verdict": "meets" if out[k] <= target else "misses" for k in ("study", "like")})
    return out


def target_sentence(t: dict) -> str:
    return (f"at this study's T = {t['T']} it scores {t['study']:.1f} and {t['study_verdict']} the target "
            f"{t['target']:.1f} by {abs(t['study'] - t['target']):.1f}; sampled with the image world's "
            f"T = {t['T_image']} (`digits_video_steps`) it scores {t['like']:.1f} and {t['like_verdict']} it by "
            f"{abs(t['like'] - t['target']):.1f}")


def paper_agreement(comparisons: dict) -> list[str]:
    """The Table 12 dimensions on which W2SD moves as the paper reports."""
    return [VIDEO_DIMENSIONS[m] for m, d in PAPER_DIRECTION.items() if direction(comparisons[m]) == d]


def video_sentences(res: dict, steps: dict, yardstick: dict) -> str:
    """The pooled frame FD against the image world's model-vs-real FD, and W2SD's direction on each dimension."""
    pooled, fd_image = res["extra"]["frame_fd_pooled"], yardstick["metrics"]["strong"]["fd"]
    clips = res["config"]["samples_per_seed"] * res["extra"]["num_seeds"]
    lines = [f"Frame FD of all {clips} clips of a method pooled: "
             + ", ".join(f"{name} {value:.1f}" for name, value in pooled.items())
             + f" (*real* = held-out real clips, the finite-sample floor). Target ≤ 1.5 × the image world's "
               f"model-vs-real FD, {yardstick['config']['name']} `strong` fd {fd_image:.1f} "
               f"({yardstick['config']['samples_per_seed']} samples per seed, DDIM T = "
               f"{yardstick['config']['sampler']['T']}): for the strong clip net, "
               f"{target_sentence(frame_target(res, steps, yardstick))}."]
    real = res["extra"]["real"]
    lines.append("Real clips: " + ", ".join(f"{metric} {real[metric]:.3f}" for metric in VIDEO_DIMENSIONS) + ".")
    for base in ("strong", "strong_equal_nfe"):
        comparisons = res["extra"]["comparisons"].get(f"w2sd_vs_{base}")
        if comparisons:
            agree = paper_agreement(comparisons)
            lines.append(f"W2SD vs {base.replace('_', ' ')} (paired over seeds): "
                         + "; ".join(f"{label} — {direction(comparisons[metric])} "
                                     f"({comparisons[metric]['mean']:+.3f})"
                                     for metric, label in VIDEO_DIMENSIONS.items())
                         + f". Same direction as the paper's Table 12 on {len(agree)} of {len(PAPER_DIRECTION)} "
                           f"dimensions ({', '.join(agree) or 'none'}).")
    return "\n\n".join(lines)


def video_headline(res: dict, steps: dict, yardstick: dict) -> str:
    """One README bullet: is the clip world readable by the frame-FD target, and W2SD's Table 12 directions."""
    comparisons = res["extra"]["comparisons"]["w2sd_vs_strong"]
    agree = paper_agreement(comparisons)
    moves = "; ".join(f"{label} {direction(comparisons[metric]).split(' (')[0]}"
                      for metric, label in VIDEO_DIMENSIONS.items())
    return (f"- **Video world (paper Table 12).** Pooled frame FD of the strong clip net against the target "
            f"1.5 × the image world's: {target_sentence(frame_target(res, steps, yardstick))}. W2SD against "
            f"standard sampling of the strong net: {moves} — the paper's direction on {len(agree)} of "
            f"{len(PAPER_DIRECTION)} dimensions ([docs/miniature-worlds.md](docs/miniature-worlds.md)).\n")


def steps_table(steps: dict) -> str:
    """The strong clip net's frame quality against the number of DDIM steps."""
    cfg = steps["config"]
    lines = [f"*strong = {cfg['models']['strong']} ({cfg['video_steps'][cfg['models']['strong']]} steps) clip net, "
             f"CFG {cfg['guidance']}, DDIM; {cfg['samples_per_seed']} clips × {steps['extra']['num_seeds']} seeds; "
             f"pooled = all clips of a method together, per seed = mean [95% bootstrap CI over seeds].*", "",
             "| method | T (= NFE, each two net passes at CFG ≠ 1) | pooled frame_fd | frame_fd per seed | "
             "class_consistency |", "|---|---|---|---|---|"]
    for name, row in steps["metrics"].items():
        lines.append(f"| {name} | {steps['extra']['method_T'][name]} | {steps['extra']['frame_fd_pooled'][name]:.1f} | "
                     f"{with_ci(row, 'frame_fd')} | {with_ci(row, 'class_consistency')} |")
    lines.append(f"| *real clips* | – | {steps['extra']['frame_fd_pooled']['real']:.1f} | "
                 f"{steps['extra']['real']['frame_fd']:.3f} | {steps['extra']['real']['class_consistency']:.3f} |")
    return "\n".join(lines)


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    blocks = {}
    studies = {name: require_results(results_root, name) for name in STUDIES}
    yardstick = studies["digits_weight_gap"]  # the image world whose model-vs-real FD sets the video target
    steps = require_results(results_root, "digits_video_steps")
    for name, columns in STUDIES.items():
        res = studies[name]
        body = [header(name, res), metrics_table(res, columns), comparison_table(res)]
        line = video_sentences(res, steps, yardstick) if name == "digits_video" else alignment_line(res)
        blocks[name] = "\n\n".join(body + ([line] if line else []))
    blocks["digits_video_headline"] = video_headline(studies["digits_video"], steps, yardstick)
    blocks["digits_video_steps"] = steps_table(steps)
    return blocks
