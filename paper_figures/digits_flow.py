# The digits worlds under rectified flow beside their VP twins, and the few-step regime (VP and flow).
"""Reads the VP matched-compute studies (digits_frontier_{dataset,weight}_gap, digits_cfg_sweep), their `_flow`
twins (velocity-trained nets on the FlowMatchEuler grid), the few-step studies digits_few_step_{dataset,weight}_gap
(+ `_flow`) and the toy λ frontiers (toy_lambda_frontier, toy_lambda_frontier_flow); writes
paper_figures/out/digits_few_step.png and the generated blocks of docs/digits.md and README.md."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.common import publish_command, require_results
from paper_figures.digits_compute import (
    FRONTIERS,
    LABEL,
    SWEEP,
    TOY_FRONTIER,
    TOY_STUDY,
    adaptive_rows,
    cheapest_both,
    comparison,
    cost_block,
    full_lam,
    verdict,
    w2sd_name,
)
from paper_figures.sweep_results import save_figure

GRIDS = {"VP": "", "flow": "_flow"}
FEW_STEP = {"digits_few_step_dataset_gap": ("dataset gap", ("balance_error", "fd")),
            "digits_few_step_weight_gap": ("training-length gap", ("adherence", "fd"))}
BETTER = {"balance_error": False, "adherence": True, "fd": False}


def gap_cases(results_root: Path, suffix: str) -> list[tuple[str, dict, dict[str, str], tuple[str, ...]]]:
    """(label, results, {role: method}, metrics) of the three gaps on one grid; roles: w2sd, standard, equal_nfe
    (standard DDIM at W2SD's NFE), guidance (tuned difference guidance at W2SD's NFE)."""
    out = []
    for name, (label, metrics) in FRONTIERS.items():
        res = require_results(results_root, name + suffix)
        full = w2sd_name(full_lam(res), "first")
        nfe = res["metrics"][full]["nfe"]
        out.append((label, res, {"w2sd": full, "standard": "strong", "equal_nfe": f"ddim_nfe{nfe}",
                                 "guidance": f"autoguidance_nfe{nfe}"}, metrics))
    sweep = require_results(results_root, SWEEP + suffix)
    out.append(("condition gap", sweep, {"w2sd": "w2sd", "standard": "cfg3", "equal_nfe": "strong_equal_nfe",
                                         "guidance": "autoguidance_equal_nfe"}, ("adherence", "fd")))
    return out


def cell(res: dict, roles: dict[str, str], base: str, metric: str) -> str:
    c = comparison(res, roles["w2sd"], roles[base], metric)
    return f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] {verdict(c)} ({c['wins']}/{c['n']})"


def side_by_side_block(results_root: Path) -> str:
    cases = {grid: gap_cases(results_root, suffix) for grid, suffix in GRIDS.items()}
    head = ["| gap | metric | " + " | ".join(f"{grid}: W2SD − {b}" for b in ("standard", "standard at equal NFE",
                                                                             "tuned guidance at equal NFE")
                                          for grid in GRIDS) + " |",
            "|---|---|" + "---|" * (3 * len(GRIDS))]
    rows = []
    for i, (label, _, _, metrics) in enumerate(cases["VP"]):
        for m in metrics:
            cells = [cell(cases[g][i][1], cases[g][i][2], b, m) for b in ("standard", "equal_nfe", "guidance")
                     for g in GRIDS]
            rows.append(f"| {label} | {LABEL[m]} | " + " | ".join(cells) + " |")
    tuning = "; ".join(f"{label}: VP w = {cases['VP'][i][1]['extra']['tuning']['w']:g}, flow w = "
                       f"{cases['flow'][i][1]['extra']['tuning']['w']:g}" for i, (label, *_) in enumerate(cases["VP"]))
    caption = ("*Paired differences W2SD − baseline over 5 seeds: mean [95% bootstrap CI], *wins*/*loses* when the CI "
               "excludes zero in W2SD's favour / against it, else *ties*; (seeds W2SD is better on / seeds). VP: the "
               "ε-nets on DDIM (T = 20); flow: the same data, nets and budget trained on the velocity objective, "
               "sampled on the FlowMatchEuler grid (shift 1, T = 20). W2SD reflects λ = T − 1 steps (NFE 58); the "
               "baselines at equal NFE are standard sampling with 58 steps and difference guidance with 29 steps, "
               f"its w tuned on held-out seeds ({tuning}). Produced by `{publish_command('<study>')}` for the "
               "VP studies and their `_flow` twins.*")
    frontier = ["| study | VP: cheapest λ keeping ≥ 90% of the full-λ gain (both metrics) | flow: same |",
                "|---|---|---|"]
    toy = {grid: require_results(results_root, TOY_FRONTIER + suffix) for grid, suffix in GRIDS.items()}
    studies = [(label, metrics, {g: cases[g][i][1] for g in GRIDS}) for i, (label, _, _, metrics)
               in enumerate(cases["VP"]) if label != "condition gap"] + [(TOY_STUDY[0], TOY_STUDY[1], toy)]
    windows: dict[str, dict[str, list[str]]] = {g: {} for g in GRIDS}
    for label, metrics, by_grid in studies:
        frontier.append(f"| {label} | " + " | ".join(cheapest_text(by_grid[g], metrics) for g in GRIDS) + " |")
        for g in GRIDS:
            found = cheapest_both(by_grid[g], metrics)
            windows[g].setdefault("no gain" if found is None else
                                  "full λ" if found[0] == full_lam(by_grid[g]) else f"the {found[1]} window",
                                  []).append(label)
    where = "; ".join(f"{g}: " + ", ".join(f"{where} for the {' and the '.join(labels)}"
                                            for where, labels in w.items()) for g, w in windows.items())
    adaptive = []
    for grid in GRIDS:
        with_adaptive = {name + GRIDS[grid]: (*FRONTIERS[name], require_results(results_root, name + GRIDS[grid]))
                         for name in FRONTIERS}
        with_adaptive = {k: v for k, v in with_adaptive.items() if v[2]["extra"].get("adaptive")}
        _, verdicts = adaptive_rows({**with_adaptive, TOY_FRONTIER + GRIDS[grid]: (*TOY_STUDY, toy[grid])})
        kept = [f"{who} ({ratio:.2f}× standard cost)" for who, ratio, reached in verdicts if reached]
        adaptive.append(f"{grid}: " + ("; ".join(kept) if kept else "no setting") + " keeps ≥ 90% of the full-λ "
                        "gain on both metrics")
    return (caption + "\n\n" + "\n".join(head + rows) + "\n\n" + "\n".join(frontier) + "\n\nWhere the "
            "cheapest λ that keeps ≥ 90% of the full-λ gain sits — " + where + ". Adaptive reflection (same "
            "calibration on held-out seeds as the VP studies): " + "; ".join(adaptive) + ".")


def cheapest_text(res: dict, metrics: tuple[str, ...]) -> str:
    found, T = cheapest_both(res, metrics), res["config"]["sampler"]["T"]
    return "full λ gains nothing" if found is None else \
        f"λ = {found[0]}, {found[1]} window (NFE {T + 2 * found[0]}, {(T + 2 * found[0]) / T:.2f}× standard)"


# -- the few-step regime -----------------------------------------------------------------------------------------
def few_step_results(results_root: Path) -> dict[tuple[str, str], dict]:
    return {(name, grid): require_results(results_root, name + suffix) for name in FEW_STEP
            for grid, suffix in GRIDS.items()}


def steps_of(res: dict) -> list[int]:
    return list(res["config"]["few_step"]["steps"])


def few_step_gain(res: dict, method: str, T: int, metric: str) -> float:
    """Improvement of a method over standard sampling at the same T (positive = better)."""
    sign = 1.0 if BETTER[metric] else -1.0
    return sign * (res["metrics"][f"{method}_T{T}"][metric] - res["metrics"][f"strong_T{T}"][metric])


def few_step_figure(results: dict[tuple[str, str], dict], out_dir: Path) -> str:
    panels = [(name, m) for name, (_, metrics) in FEW_STEP.items() for m in metrics]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (name, metric) in zip(axes[0], panels):
        for grid, style in (("VP", "-"), ("flow", "--")):
            res = results[(name, grid)]
            steps = steps_of(res)
            for method, color in (("w2sd", "C0"), ("guidance_matched", "C1"), ("ddim_matched", "C2")):
                ax.plot(steps, [few_step_gain(res, method, T, metric) for T in steps], ls=style, color=color,
                        marker="o", ms=3, label=f"{method} ({grid})")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(steps, [str(T) for T in steps])
        ax.set_xlabel("T (W2SD's steps; baselines at its NFE 3T − 2)")
        ax.set_title(f"{FEW_STEP[name][0]}: {LABEL[metric]}", fontsize=8)
    axes[0][0].legend(fontsize=5)
    return save_figure(fig, out_dir, "digits_few_step", ylabel="gain over standard sampling at T")


def few_step_block(results: dict[tuple[str, str], dict], png: str) -> str:
    lines = []
    for name, (label, metrics) in FEW_STEP.items():
        lines += [f"**{label}**", "", "| T | grid | " + " | ".join(f"W2SD − {b}: {LABEL[m]}" for b in
                                                                  ("standard", "DDIM at 3T − 2", "guidance at 3T − 2")
                                                                  for m in metrics) + " | guidance w |",
                  "|---|---|" + "---|" * (3 * len(metrics) + 1)]
        for T in steps_of(results[(name, "VP")]):
            for grid in GRIDS:
                res = results[(name, grid)]
                roles = {"w2sd": f"w2sd_T{T}", "standard": f"strong_T{T}", "ddim": f"ddim_matched_T{T}",
                         "guidance": f"guidance_matched_T{T}"}
                cells = [cell(res, roles, b, m) for b in ("standard", "ddim", "guidance") for m in metrics]
                w = res["extra"]["method_options"][roles["guidance"]]["w"]
                lines.append(f"| {T} | {grid} | " + " | ".join(cells) + f" | {w:g} |")
        lines.append("")
    first = results[(next(iter(FEW_STEP)), "VP")]
    caption = (f"*Paired differences over {first['extra']['num_seeds']} seeds (mean [95% CI] verdict (seeds W2SD is "
               "better on / seeds)). At each T: W2SD with λ = T − 1 (NFE 3T − 2) against standard sampling at T, "
               "standard sampling with 3T − 2 steps and difference guidance with (3T − 2)/2 steps whose w is tuned "
               "at that step count on held-out seeds (grid 0.25–2). Produced by "
               f"`{publish_command('digits_few_step_dataset_gap')}` and its weight-gap / `_flow` twins.*")
    return caption + "\n\n" + "\n".join(lines) + f"\n![digits_few_step]({png})"


def beats_guidance(results: dict[tuple[str, str], dict]) -> list[str]:
    """Per world and grid: the T at which W2SD wins against tuned guidance at matched NFE on some metric (paired CI
    excludes zero in its favour) and the T at which it loses."""
    out = []
    for name, (label, metrics) in FEW_STEP.items():
        for grid in GRIDS:
            res = results[(name, grid)]
            found = {"wins": {}, "loses": {}}
            for m in metrics:
                for T in steps_of(res):
                    v = verdict(comparison(res, f"w2sd_T{T}", f"guidance_matched_T{T}", m))
                    if v in found:
                        found[v].setdefault(LABEL[m], []).append(str(T))
            said = {v: "; ".join(f"on {m} at T = {', '.join(ts)}" for m, ts in by_metric.items()) or "at no T"
                    for v, by_metric in found.items()}
            out.append(f"{label}, {grid}: beats it {said['wins']}, loses {said['loses']}")
    return out


def headline_block(results_root: Path, few: dict[tuple[str, str], dict]) -> str:
    cases = {grid: gap_cases(results_root, suffix) for grid, suffix in GRIDS.items()}
    holds = []
    for i, (label, _, _, metrics) in enumerate(cases["VP"]):
        parts = []
        for m in metrics:
            v = {g: verdict(comparison(cases[g][i][1], cases[g][i][2]["w2sd"], cases[g][i][2]["standard"], m))
                 for g in GRIDS}
            parts.append(f"{LABEL[m]} VP {v['VP']}, flow {v['flow']}")
        holds.append(f"{label}: " + ", ".join(parts))
    guidance = []
    for label, res, roles, metrics in cases["flow"]:
        guidance.append(f"{label}: " + ", ".join(
            f"{verdict(comparison(res, roles['w2sd'], roles['guidance'], m))} on {LABEL[m]}" for m in metrics))
    return ("- **Rectified flow (digits nets trained on the velocity objective).** W2SD against standard sampling, "
            "VP vs flow — " + "; ".join(holds) + ". Against tuned difference guidance at matched NFE on the flow "
            "grid — " + "; ".join(guidance) + ". **Few steps** (T ∈ {4, 8, 20, 50}, W2SD against tuned guidance "
            "at its NFE): " + "; ".join(beats_guidance(few)) + " ([docs/digits.md](docs/digits.md)).")


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    few = few_step_results(results_root)
    png = few_step_figure(few, out_dir)
    flow = {name + "_flow": require_results(results_root, name + "_flow") for name in (*FRONTIERS, SWEEP)}
    few_named = {name + GRIDS[grid]: res for (name, grid), res in few.items()}
    return {"digits_flow_vs_vp": side_by_side_block(results_root), "digits_few_step": few_step_block(few, png),
            "digits_flow_headline": headline_block(results_root, few),
            "digits_flow_cost": cost_block({**flow, **few_named,
                                            TOY_FRONTIER + "_flow": require_results(results_root,
                                                                                    TOY_FRONTIER + "_flow")})}
