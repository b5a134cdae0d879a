# Matched-compute digits studies (issue 14): W2SD vs tuned difference guidance, the λ cost frontier, the CFG curve.
"""Reads results/digits_frontier_{dataset,weight}_gap, results/digits_cfg_sweep and (toy check of the frontier)
results/ablation_reflection_steps; writes paper_figures/out/digits_frontier.png and digits_cfg_sweep.png and the
generated blocks of docs/digits.md (`<!-- results:NAME -->` … `<!-- /results:NAME -->`, the README convention).

`build` (run by `python -m paper_figures [--check]`) writes the figures and returns the blocks, which
paper_figures renders into docs/digits.md like every other page."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_figures.common import publish_command, require_results
from paper_figures.sweep_results import README_FIGURE_DIR, load_sweep, save_figure, world_dim

# study → (label, (its headline metric, its distribution metric))
FRONTIERS = {"digits_frontier_dataset_gap": ("dataset gap", ("balance_error", "fd")),
             "digits_frontier_weight_gap": ("training-length gap", ("adherence", "fd"))}
TOY_FRONTIER = "toy_lambda_frontier"
TOY_STUDY = ("toy 1-D mixture, ratio-2 pair", ("tv_mode_weights", "w1"))
SWEEP = "digits_cfg_sweep"
TOY = "ablation_reflection_steps"
KEEP = 0.9  # "cheapest λ that keeps ≥ 90 % of the full-λ gain"
MAX_COST = 1.5  # adaptive reflection's aim: full-λ quality for ≤ 1.5× the standard NFE
HIGHER = {"minority_fraction": True, "balance_error": False, "adherence": True, "fd": False, "tv_mode_weights": False,
          "w1": False}
LABEL = {"minority_fraction": "minority share", "balance_error": "distance of the minority share to ½",
         "adherence": "class adherence", "fd": "FD to real digits", "tv_mode_weights": "TV of mode weights",
         "w1": "W1 to the ideal"}


# -- reading a study --------------------------------------------------------------------------------------------
def full_lam(res: dict) -> int:
    return res["config"]["sampler"]["T"] - 1


def w2sd_name(lam: int, window: str) -> str:
    return f"w2sd_lam{lam}_{window}"


def frontier_rows(res: dict, window: str) -> list[tuple[int, str]]:
    """(λ, method) along one window, λ = 0 (strong) first; λ = T − 1 is stored once, under the first window."""
    lams = res["config"]["frontier"]["lams"]
    first = res["config"]["frontier"]["windows"][0]
    rows = [(0, "strong")]
    for lam in lams:
        rows.append((lam, w2sd_name(lam, first if lam == full_lam(res) else window)))
    return rows


def mean(res: dict, method: str, metric: str) -> float:
    return res["metrics"][method][metric]


def gain(res: dict, method: str, metric: str) -> float:
    """Improvement over standard DDIM (positive = better, whichever direction the metric improves in)."""
    sign = 1.0 if HIGHER[metric] else -1.0
    return sign * (mean(res, method, metric) - mean(res, "strong", metric))


def cheapest_lam(rows: list[tuple[int, float]], keep: float = KEEP) -> int | None:
    """Smallest λ whose gain is ≥ keep × the gain at the largest λ (rows: (λ, gain) sorted by λ); None when the
    largest λ gains nothing."""
    full = rows[-1][1]
    if full <= 0:
        return None
    return next(lam for lam, g in rows if g >= keep * full)


def comparison(res: dict, method: str, base: str, metric: str) -> dict:
    return res["extra"]["comparisons"][f"{method}_vs_{base}"][metric]


def fmt_diff(c: dict) -> str:
    return f"{c['mean']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] ({c['wins']}/{c['n']})"


def verdict(c: dict) -> str:
    """`wins` when the paired CI excludes zero in W2SD's favour, `loses` when against it, else `ties`."""
    favourable = c["wins"] > c["losses"]
    if c["ci_low"] > 0 or c["ci_high"] < 0:
        return "wins" if favourable else "loses"
    return "ties"


# -- blocks -----------------------------------------------------------------------------------------------------
def guidance_block(studies: dict[str, dict], sweep: dict) -> str:
    """W2SD (λ = T − 1) against tuned difference guidance at its own NFE and at W2SD's NFE, and DDIM at W2SD's."""
    lines = ["| study | metric | W2SD − guidance at 2T | W2SD − guidance at W2SD's NFE | W2SD − DDIM at W2SD's NFE "
             "| tuned w (held-out FD at 2T) |", "|---|---|---|---|---|---|"]
    for name, res in studies.items():
        label, metrics = FRONTIERS[name]
        full = w2sd_name(full_lam(res), "first")
        nfe = res["metrics"][full]["nfe"]
        for m in metrics:
            cells = [fmt_diff(comparison(res, full, b, m)) for b in ("autoguidance", f"autoguidance_nfe{nfe}",
                                                                      f"ddim_nfe{nfe}")]
            lines.append(f"| {label} | {m} | " + " | ".join(cells) + f" | {tuning_cell(res)} |")
    nfe = sweep["metrics"]["w2sd"]["nfe"]
    for m in ("adherence", "fd"):
        cells = [fmt_diff(comparison(sweep, "w2sd", b, m)) for b in ("autoguidance", "autoguidance_equal_nfe",
                                                                      "strong_equal_nfe")]
        lines.append(f"| condition gap | {m} | " + " | ".join(cells) + f" | {tuning_cell(sweep)} |")
    head = (f"*Paired difference W2SD − baseline over seeds, mean [95% bootstrap CI] (W2SD's wins / seeds); W2SD with "
            f"λ = T − 1 (NFE {nfe} at T = {sweep['config']['sampler']['T']}); difference guidance ε_s + w(ε_s − ε_w) "
            f"at NFE 2T and with (T + 2λ)/2 steps at W2SD's NFE; higher is better for adherence, lower for FD and for "
            f"balance_error = |minority share − ½| (the balanced real set's share).*")
    return head + "\n\n" + "\n".join(lines) + "\n\n" + guidance_sentences(studies, sweep)


def first_order_block(studies: dict[str, dict]) -> str:
    """W2SD beside its first-order picture (guidance with the weak model read on the advanced latent, w = 1) and
    plain difference guidance at w = 1."""
    methods = ("strong", "autoguidance_w1", "advanced_guidance")
    lines = ["| study | metric | standard DDIM | guidance w = 1 | guidance w = 1 on the advanced latent | W2SD "
             "(λ = T − 1) | W2SD − advanced-latent guidance | advanced-latent − plain guidance |",
             "|---|---|---|---|---|---|---|---|"]
    closer = []
    for name, res in studies.items():
        label, metrics = FRONTIERS[name]
        full = w2sd_name(full_lam(res), "first")
        for m in metrics:
            cells = [f"{mean(res, n, m):.3f} ({res['metrics'][n]['nfe']})" for n in (*methods, full)]
            diffs = [fmt_diff(comparison(res, a, b, m)) for a, b in ((full, methods[2]), (methods[2], methods[1]))]
            lines.append(f"| {label} | {m} | " + " | ".join(cells + diffs) + " |")
            target = mean(res, full, m)
            nearer = abs(mean(res, methods[2], m) - target) < abs(mean(res, methods[1], m) - target)
            closer.append(f"{label}, {LABEL[m]}: {'nearer' if nearer else 'not nearer'}")
    head = ("*Means (NFE in brackets) and paired differences over seeds, mean [95% CI] (wins of the first method / "
            "seeds). Guidance on the advanced latent: ε_s(x_t) + w(ε_s(x_t) − ε_w(x′, t)) with x′ the strong DDIM "
            "step, on the levels W2SD reflects (`w2sd.sampling.sample_advanced_guidance`); to first order in the gap "
            "this is W2SD with the strong ε of the main step reused.*")
    return (head + "\n\n" + "\n".join(lines) + "\n\nIs W2SD's mean nearer to guidance on the advanced latent "
            "than to plain guidance at the same w = 1? " + "; ".join(closer) + ".")


def tuning_cell(res: dict) -> str:
    t = res["extra"]["tuning"]
    scores = ", ".join(f"{w:g}: {s:.1f}" for w, s in t["scores"])
    return f"w = {t['w']:g} ({scores})"


def guidance_sentences(studies: dict[str, dict], sweep: dict) -> str:
    """Where W2SD beats tuned difference guidance at matched NFE and where not, from the paired CIs."""
    out = []
    cases = [(FRONTIERS[n][0], res, w2sd_name(full_lam(res), "first"), FRONTIERS[n][1]) for n, res in studies.items()]
    cases.append(("condition gap", sweep, "w2sd", ("adherence", "fd")))
    for label, res, full, metrics in cases:
        nfe = res["metrics"][full]["nfe"]
        base = "autoguidance_equal_nfe" if label == "condition gap" else f"autoguidance_nfe{nfe}"
        diffs = {m: comparison(res, full, base, m) for m in metrics}
        parts = [f"{verdict(c)} on {LABEL[m]} ({c['mean']:+.3f}, {c['wins']}/{c['n']} seeds)" for m, c in diffs.items()]
        out.append(f"On the {label}, W2SD at matched NFE against tuned difference guidance (w = "
                   f"{res['extra']['tuning']['w']:g}) " + " and ".join(parts) + ".")
    return " ".join(out) + (" (*wins*/*loses*: the 95% CI of the paired difference excludes zero; *ties*: it does "
                            "not.)")


def frontier_block(name: str, res: dict) -> str:
    label, (metric, second) = FRONTIERS[name]
    windows = res["config"]["frontier"]["windows"]
    lines = ["| λ | NFE | " + " | ".join(f"W2SD {w}: {m}" for w in windows for m in (metric, second))
             + f" | DDIM: {metric} | DDIM: {second} | guidance: {metric} | guidance: {second} |",
             "|---|---|" + "---|" * (2 * len(windows) + 4)]
    by_window = {w: dict(frontier_rows(res, w)) for w in windows}
    for lam in by_window[windows[0]]:
        nfe = res["config"]["sampler"]["T"] + 2 * lam
        cells = [f"{mean(res, by_window[w][lam], k):.3f}" for w in windows for k in (metric, second)]
        base = ["strong", "strong"] if lam == 0 else [f"ddim_nfe{nfe}", f"autoguidance_nfe{nfe}"]
        cells += [f"{mean(res, b, k):.3f}" for b in base for k in (metric, second)]
        lines.append(f"| {lam} | {nfe} | " + " | ".join(cells) + " |")
    head = (f"*{label}: means over {res['extra']['num_seeds']} seeds × {res['config']['samples_per_seed']} samples; "
            f"W2SD reflecting λ of T = {res['config']['sampler']['T']} steps (first or last window) against standard "
            f"DDIM and tuned difference guidance (w = {res['extra']['tuning']['w']:g}) at the same NFE; λ = 0 is "
            f"standard DDIM for all three. Produced by `{publish_command(name)}`.*")
    return head + "\n\n" + "\n".join(lines) + "\n\n" + cheapest_sentence(label, res, (metric, second))


def cheapest_sentence(label: str, res: dict, metrics: tuple[str, ...]) -> str:
    out = []
    T = res["config"]["sampler"]["T"]
    for window in res["config"]["frontier"]["windows"]:
        for m in metrics:
            rows = [(lam, gain(res, method, m)) for lam, method in frontier_rows(res, window)]
            lam = cheapest_lam(rows)
            full = rows[-1][1]
            if lam is None:
                out.append(f"{window} window, {LABEL[m]}: full λ gains nothing ({full:+.3f})")
            else:
                out.append(f"{window} window, {LABEL[m]}: λ = {lam} (NFE {T + 2 * lam}, {(T + 2 * lam) / T:.2f}× "
                           f"standard) keeps ≥ {KEEP:.0%} of the full-λ gain {full:+.3f}")
    return f"Cheapest λ with ≥ {KEEP:.0%} of the full-λ (λ = {T - 1}) gain on the {label}: " + "; ".join(out) + "."


def cheapest_both(res: dict, metrics: tuple[str, ...]) -> tuple[int, str] | None:
    """The cheapest (λ, window) keeping ≥ 90 % of the full-λ gain on every metric (None if full λ gains nothing)."""
    best = None
    for window in res["config"]["frontier"]["windows"]:
        lams = [cheapest_lam([(lam, gain(res, n, m)) for lam, n in frontier_rows(res, window)]) for m in metrics]
        if None not in lams and (best is None or max(lams) < best[0]):
            best = (max(lams), window)
    return best


def headline_block(studies: dict[str, dict], sweep: dict, toy: dict) -> str:
    """The three answers of issue 14, one paragraph each, from the stored results."""
    cheap = []
    for label, metrics, res in [(*FRONTIERS[n], r) for n, r in studies.items()] + [(*TOY_STUDY, toy)]:
        found, T = cheapest_both(res, metrics), res["config"]["sampler"]["T"]
        cheap.append(f"{label}: " + ("full λ gains nothing" if found is None else
                                     f"λ = {found[0]} in the {found[1]} window (NFE {T + 2 * found[0]}, "
                                     f"{(T + 2 * found[0]) / T:.2f}× standard)"))
    with_adaptive = {n: (*FRONTIERS[n], r) for n, r in studies.items() if r["extra"].get("adaptive")}
    _, verdicts = adaptive_rows({**with_adaptive, TOY_FRONTIER: (*TOY_STUDY, toy)})
    return ("- **W2SD vs tuned difference guidance at matched NFE.** " + guidance_sentences(studies, sweep) + "\n"
            f"- **Cheapest λ keeping ≥ {KEEP:.0%} of the full-λ gain on both metrics** (λ = T − 1 is full): "
            + "; ".join(cheap) + ".\n- **Adaptive reflection.** " + adaptive_summary(verdicts) + "\n")


def toy_sentence(results_root: Path) -> str:
    """The same 90 % rule on the toy λ sweep (T = 50, exact and trained ε, 1-D and 2-D worlds)."""
    jobs = load_sweep(results_root, TOY)
    groups: dict[tuple[int, str], list[dict]] = {}
    for job in jobs:
        groups.setdefault((world_dim(job), job["config"]["model"]["kind"]), []).append(job)
    out = []
    for (dim, kind), runs in sorted(groups.items()):
        runs.sort(key=lambda j: j["extra"]["lam"])
        T = runs[0]["config"]["sampler"]["T"]
        parts = []
        for method, window in (("w2sd", "first"), ("w2sd_last", "last")):
            rows = [(j["extra"]["lam"], j["metrics"]["strong"]["tv_mode_weights"] - j["metrics"][method]
                     ["tv_mode_weights"]) for j in runs]
            lam = cheapest_lam(rows)
            parts.append(f"{window} window " + ("no full-λ gain" if lam is None else f"λ = {lam}"))
        out.append(f"{dim}-D {kind} ε: " + ", ".join(parts))
    lams = sorted({j["extra"]["lam"] for j in jobs})
    return (f"Toy check (results/{TOY}, T = {T}, λ ∈ {lams}, TV of mode weights to the ideal): the cheapest λ with "
            f"≥ {KEEP:.0%} of the full-λ gain is " + "; ".join(out) + ".")


def toy_frontier_block(res: dict) -> str:
    label, metrics = TOY_STUDY
    windows = res["config"]["frontier"]["windows"]
    by_window = {w: dict(frontier_rows(res, w)) for w in windows}
    lines = ["| λ | NFE | " + " | ".join(f"{w} window: {m}" for w in windows for m in metrics) + " |",
             "|---|---|" + "---|" * (len(windows) * len(metrics))]
    for lam in by_window[windows[0]]:
        cells = [f"{mean(res, by_window[w][lam], m):.4f}" for w in windows for m in metrics]
        lines.append(f"| {lam} | {res['config']['sampler']['T'] + 2 * lam} | " + " | ".join(cells) + " |")
    world = res["config"]["world"]
    head = (f"*{label} (ideal {world['ideal_weights']}, strong {world['strong_weights']}, weak "
            f"{world['weak_weights']}, exact ε), T = {res['config']['sampler']['T']}, means over "
            f"{res['extra']['num_seeds']} seeds × {res['config']['num_samples']} samples (lower is better). Produced "
            f"by `{publish_command(TOY_FRONTIER)}`.*")
    return head + "\n\n" + "\n".join(lines) + "\n\n" + cheapest_sentence(label, res, metrics)


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """Piecewise-linear value at x of points sorted by their first coordinate (None outside their range)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (x - x0) * (y1 - y0) / (x1 - x0)
    return None


def adaptive_block(studies: dict[str, tuple[str, tuple[str, str], dict]]) -> str:
    """Adaptive reflection vs full λ and vs fixed λ at the same cost (mean evaluations per sample)."""
    lines, verdicts = adaptive_rows(studies)
    head = ("*Adaptive reflection (`sample_w2sd(threshold=…)`, λ = T − 1): a sample stops reflecting once a reflection "
            "moved it by an RMS distance ≤ the level's threshold, calibrated as the q-quantile of full W2SD's "
            "displacements on the held-out seeds; cost = mean evaluations per sample; fixed-λ columns: the frontier's "
            "W2SD linearly interpolated to the same NFE (– outside its range); last column: paired difference over "
            "seeds, mean [95% CI] (adaptive's wins / seeds).*")
    return head + "\n\n" + "\n".join(lines) + "\n\n" + adaptive_summary(verdicts)


def adaptive_summary(verdicts: list[tuple[str, float, bool]]) -> str:
    aim = [f"{who} ({ratio:.2f}×)" for who, ratio, reached in verdicts if reached and ratio <= MAX_COST]
    per_setting = [f"{who}: {ratio:.2f}× standard cost, {'keeps' if reached else 'does not keep'} ≥ {KEEP:.0%} of "
                   f"the full-λ gain on both metrics" for who, ratio, reached in verdicts]
    return (f"Aim — full-λ quality (≥ {KEEP:.0%} of its gain on both metrics) at ≤ {MAX_COST}× standard cost: "
            + ("reached by " + "; ".join(aim) if aim else "not reached by any adaptive setting") + ". Per setting: "
            + "; ".join(per_setting) + ".")


def adaptive_rows(studies: dict[str, tuple[str, tuple[str, str], dict]]) -> tuple[list[str], list]:
    lines = ["| study | method | NFE per sample (× standard) | metric | adaptive | full λ | fixed λ, first window, "
             "same NFE | fixed λ, last window, same NFE | share of the full-λ gain | adaptive − full λ |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for label, metrics, res in studies.values():
        T, full = res["config"]["sampler"]["T"], w2sd_name(full_lam(res), "first")
        for method in res["extra"]["adaptive"]["quantiles"]:
            cost = mean(res, method, "nfe_per_sample")
            shares = {}
            for m in metrics:
                fixed = [interpolate([(T + 2 * lam, mean(res, n, m)) for lam, n in frontier_rows(res, w)], cost)
                         for w in res["config"]["frontier"]["windows"]]
                shares[m] = gain(res, method, m) / gain(res, full, m) if gain(res, full, m) > 0 else None
                share = "–" if shares[m] is None else f"{shares[m]:.0%}"
                lines.append(f"| {label} | {method} | {cost:.1f} ({cost / T:.2f}×) | {m} | {mean(res, method, m):.3f} "
                             f"| {mean(res, full, m):.3f} | " + " | ".join("–" if f is None else f"{f:.3f}"
                                                                          for f in fixed)
                             + f" | {share} | {fmt_diff(comparison(res, method, full, m))} |")
            reached = all(v is not None and v >= KEEP for v in shares.values())
            verdicts.append((f"{label}, {method}", cost / T, reached))
    return lines, verdicts



def sweep_block(res: dict, png: str) -> str:
    scales = res["extra"]["cfg_scales"]
    lines = ["| method | CFG scale | adherence | FD | NFE | nearest CFG scale (mean L2 to its samples) |",
             "|---|---|---|---|---|---|"]
    for s in scales:
        role = f"cfg{s:g}"
        lines.append(f"| standard DDIM | {s:g} | {mean(res, role, 'adherence'):.3f} | {mean(res, role, 'fd'):.1f} | "
                     f"{res['metrics'][role]['nfe']} | – |")
    for name in ("w2sd", "autoguidance", "autoguidance_equal_nfe", "strong_equal_nfe"):
        scale, dist = nearest_scale(res, name)
        lines.append(f"| {name} | {effective_label(res, name)} | {mean(res, name, 'adherence'):.3f} | "
                     f"{mean(res, name, 'fd'):.1f} | {res['metrics'][name]['nfe']} | {scale:g} ({dist:.2f}) |")
    g = res["config"]["guidance"]
    head = (f"*Condition gap on the `{res['config']['snapshot']}` net (strong = CFG {g['strong']:g}, weak = CFG "
            f"{g['weak']:g}), T = {res['config']['sampler']['T']}, means over {res['extra']['num_seeds']} seeds × "
            f"{res['config']['samples_per_seed']} samples; nearest scale: the CFG scale whose samples from the same "
            f"x_T lie closest (first seed). Produced by `{publish_command(SWEEP)}`.*")
    return head + "\n\n" + "\n".join(lines) + "\n\n" + sweep_sentences(res) + f"\n\n![{SWEEP}]({png})\n"


def effective_label(res: dict, name: str) -> str:
    """Difference guidance between CFG s and CFG s_w with weight w is CFG s + w·(s − s_w) exactly."""
    g = res["config"]["guidance"]
    if name.startswith("autoguidance"):
        w = res["extra"]["tuning"]["w"]
        return f"= {g['strong'] + w * (g['strong'] - g['weak']):g} (w = {w:g})"
    return f"{g['strong']:g} (+ reflection)" if name == "w2sd" else f"{g['strong']:g}"


def nearest_scale(res: dict, name: str) -> tuple[float, float]:
    return min(((s, d) for s, d in res["extra"]["distance_to_cfg"][name]), key=lambda sd: sd[1])


def fd_matched_scale(res: dict, name: str) -> float | None:
    """The CFG scale ≥ the strong one at which plain CFG's FD (linearly interpolated) equals the method's FD."""
    target, lo = mean(res, name, "fd"), res["config"]["guidance"]["strong"]
    pts = [(s, mean(res, f"cfg{s:g}", "fd")) for s in res["extra"]["cfg_scales"] if s >= lo]
    for (s0, f0), (s1, f1) in zip(pts, pts[1:]):
        if min(f0, f1) <= target <= max(f0, f1) and f1 != f0:
            return s0 + (target - f0) * (s1 - s0) / (f1 - f0)
    return None


def sweep_sentences(res: dict) -> str:
    """Where W2SD lands on the plain-CFG curve, read off the stored FDs and sample distances."""
    g, weak = res["config"]["guidance"]["strong"], res["config"]["guidance"]["weak"]
    scales = res["extra"]["cfg_scales"]
    fds = [mean(res, f"cfg{s:g}", "fd") for s in scales]
    best = scales[fds.index(min(fds))]
    rising = all(a <= b for a, b in zip(fds[fds.index(min(fds)):], fds[fds.index(min(fds)) + 1:]))
    matched, (nearest, _) = fd_matched_scale(res, "w2sd"), nearest_scale(res, "w2sd")
    w2sd_fd = mean(res, "w2sd", "fd")
    at = (f"plain CFG reaches it at scale ≈ {matched:.1f}" if matched is not None
          else f"no swept CFG scale ≥ {g:g} reaches it")
    trend = "rises steadily" if rising else "varies"
    first = (f"Plain CFG's FD is lowest at scale {best:g} ({min(fds):.1f}) and {trend} beyond it; W2SD (CFG {g:g} "
             f"reflected off CFG {weak:g}) has FD {w2sd_fd:.1f} — {at} — and its samples "
             f"lie nearest those of plain CFG {nearest:g}.")
    larger = matched is not None and matched > g and nearest > g
    second = (f"So on this net W2SD acts like CFG at a larger scale: the strong model is already past the FD optimum "
              f"(scale {best:g} < {g:g}) and the reflection adds more guidance on top; on such a net, use plain CFG at "
              f"a lower scale rather than reflections off the unconditional model."
              if larger and best < g else
              "So W2SD is not simply CFG at a larger scale here.")
    return first + " " + second


# -- figures ----------------------------------------------------------------------------------------------------
def frontier_figure(studies: dict[str, dict], out_dir: Path) -> str:
    fig, axes = plt.subplots(len(studies), 2, figsize=(8.4, 3.0 * len(studies)), squeeze=False)
    for row, (name, res) in zip(axes, studies.items()):
        label, metrics = FRONTIERS[name]
        T = res["config"]["sampler"]["T"]
        nfes = [T] + [T + 2 * lam for lam in res["config"]["frontier"]["lams"]]
        for ax, m in zip(row, metrics):
            for window in res["config"]["frontier"]["windows"]:
                rows = frontier_rows(res, window)
                ax.plot([T + 2 * lam for lam, _ in rows], [mean(res, n, m) for _, n in rows], marker="o", ms=3,
                        label=f"W2SD, {window} λ steps")
            ax.plot(nfes, [mean(res, n, m) for n in ["strong", *(f"ddim_nfe{n}" for n in nfes[1:])]], marker="s",
                    ms=3, ls="--", color="gray", label="standard DDIM, T = NFE")
            ax.plot(nfes, [mean(res, n, m) for n in ["strong", *(f"autoguidance_nfe{n}" for n in nfes[1:])]],
                    marker="^", ms=3, ls="-.", label="difference guidance (tuned w), T = NFE/2")
            quantiles = (res["extra"].get("adaptive") or {}).get("quantiles", {})
            if quantiles:
                ax.scatter([mean(res, n, "nfe_per_sample") for n in quantiles], [mean(res, n, m) for n in quantiles],
                           marker="*", s=40, color="red", zorder=3,
                           label="adaptive reflection, q = " + ", ".join(f"{q:g}" for q in quantiles.values()))
            ax.axhline(mean(res, "ideal", m), color="k", lw=0.8, ls=":", label="ideal model")
            ax.set_title(f"{label}: {LABEL[m]}", fontsize=9)
            ax.set_xlabel("NFE")
    axes[0][0].legend(fontsize=6)
    return save_figure(fig, out_dir, "digits_frontier")


def sweep_figure(res: dict, out_dir: Path) -> str:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.4, 3.0))
    scales = res["extra"]["cfg_scales"]
    ax.plot(scales, [mean(res, f"cfg{s:g}", "fd") for s in scales], marker="o", ms=3, color="gray",
            label="plain CFG (NFE T)")
    lines = (("w2sd", "-", "C0"), ("autoguidance", "-.", "C1"), ("autoguidance_equal_nfe", ":", "C2"))
    for name, style, color in lines:
        ax.axhline(mean(res, name, "fd"), ls=style, lw=1, label=f"{name} (NFE {res['metrics'][name]['nfe']})",
                   color=color)
    ax.set_xlabel("CFG scale")
    ax.set_ylabel("FD to real digits")
    ax.legend(fontsize=6)
    for name in ("w2sd", "autoguidance"):
        pts = res["extra"]["distance_to_cfg"][name]
        ax2.plot([s for s, _ in pts], [d for _, d in pts], marker="o", ms=3, label=name)
    ax2.set_xlabel("CFG scale")
    ax2.set_ylabel("mean L2 to plain CFG (same x_T)")
    ax2.legend(fontsize=6)
    return save_figure(fig, out_dir, SWEEP)


# -- entry points -----------------------------------------------------------------------------------------------
def load(results_root: Path) -> tuple[dict[str, dict], dict]:
    return ({name: require_results(results_root, name) for name in FRONTIERS}, require_results(results_root, SWEEP))


def doc_blocks(results_root: Path) -> dict[str, str]:
    """The generated blocks of docs/digits.md (text only; figure links point at paper_figures/out)."""
    studies, sweep = load(results_root)
    blocks = {"digits_guidance": guidance_block(studies, sweep), "digits_first_order": first_order_block(studies)}
    for name, res in studies.items():
        blocks[name] = frontier_block(name, res)
    figure = f"![digits_frontier]({README_FIGURE_DIR}/digits_frontier.png)"
    blocks[name] += f"\n\n{toy_sentence(results_root)}\n\n{figure}\n"
    toy = require_results(results_root, TOY_FRONTIER)
    blocks[TOY_FRONTIER] = toy_frontier_block(toy)
    with_adaptive = {n: (*FRONTIERS[n], res) for n, res in studies.items() if res["extra"].get("adaptive")}
    blocks["digits_adaptive"] = adaptive_block({**with_adaptive, TOY_FRONTIER: (*TOY_STUDY, toy)})
    blocks["digits_headlines"] = headline_block(studies, sweep, toy)
    blocks[SWEEP] = sweep_block(sweep, f"{README_FIGURE_DIR}/{SWEEP}.png")
    blocks["digits_cost"] = cost_block({**studies, SWEEP: sweep, TOY_FRONTIER: toy})
    return blocks


def cost_block(results: dict[str, dict]) -> str:
    """Wall and CPU seconds of each stored study run, with the threads it sampled on and the load it started under."""
    lines = ["| study | methods | samples × seeds (+ held-out seeds) | torch threads | wall (s) | CPU (s) | "
             "load at start |", "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        cfg, env = res["config"], res.get("environment", {})
        held_out = {s for block in ("tune", "adaptive") for s in (cfg.get(block) or {}).get("seeds", [])}
        load = env.get("load_average_at_start")
        threads = cfg["digits"]["torch_threads"] if "digits" in cfg else "torch's default"
        started = "–" if load is None else f"{load:.1f} ({env.get('cpus')} cores)"
        lines.append(f"| `{name}` | {len(res['metrics'])} | {cfg.get('samples_per_seed') or cfg.get('num_samples')} × "
                     f"{res['extra']['num_seeds']} (+ {len(held_out)}) | {threads} | {res['total_time_s']:.0f} | "
                     f"{res['extra']['cpu_time_s']:.0f} | {started} |")
    return ("*Wall time (`total_time_s`: the study, loading the committed nets included; no training) and process CPU "
            "time (`extra.cpu_time_s`) of each stored run, the torch threads it sampled on (`digits.torch_threads`) "
            "and the machine's 1-minute load average when it started (– where the run predates that record). The "
            "machine is shared: a load near 0 means the run had it to itself, and its speed also varies from day to "
            "day, so compare rows stored on the same day.*\n\n" + "\n".join(lines))


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    studies, sweep = load(results_root)
    frontier_figure(studies, out_dir)
    sweep_figure(sweep, out_dir)
    return doc_blocks(results_root)

