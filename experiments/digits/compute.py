# Matched-compute methods of the digits studies: the λ cost frontier's method table and held-out tuning of w.
"""A study's `frontier: {lams, windows}` adds, for each λ, W2SD reflecting λ steps (NFE T + 2λ) in each window,
standard DDIM run with T + 2λ steps and difference guidance (`autoguidance`) run with (T + 2λ)/2 steps, so every
W2SD point has both baselines at exactly its NFE (`compare_with` names further baselines, e.g. difference guidance
at its own NFE 2T). λ = 0 is the study's `strong` method.

Difference guidance methods named in `tune.methods` (and the frontier's own difference-guidance baselines) get a
tuned w: the study picks w from `tune.grid` by the mean of `tune.metric` on `tune.seeds` (held out: disjoint from
the reported seeds) at the study's own T (NFE 2T), and every tuned method uses that w (results.json records it
under `extra.tuning`).

`few_step: {steps: [4, 8, 20, 50]}` adds, for each T, standard DDIM at T, W2SD with λ = T − 1 (NFE 3T − 2) and
both baselines at W2SD's NFE — standard DDIM with 3T − 2 steps and difference guidance with (3T − 2)/2 steps whose
w is tuned at its own step count — so the reflection and its first-order approximation meet at every budget.

`adaptive: {quantiles, seeds}` adds adaptive reflection (w2sd.sampling, `threshold`): W2SD with λ = T − 1 whose
per-level thresholds are the given quantile of the reflection displacements of full W2SD on the held-out `seeds`
(`calibrate_threshold`); its cost is the mean evaluations per sample (`nfe_per_sample`), compared with every fixed-λ
W2SD of the frontier and with standard DDIM."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from w2sd.sampling import WINDOWS
from w2sd.validation import ConfigError, check_choice, check_int_range

TUNED = "tuned"


def frontier_methods(lams: Sequence[int], windows: Sequence[str], num_steps: int,
                     compare_with: Sequence[str] = ()) -> tuple[dict, list]:
    """Method specs and (method, baseline) comparisons of the λ frontier at T = num_steps: each W2SD point against
    `strong`, both baselines at its NFE and the configured methods named in `compare_with`."""
    if not lams or not windows:
        raise ConfigError(f"frontier needs non-empty lams and windows (got lams={list(lams)}, windows="
                          f"{list(windows)}); e.g. lams: [1, 2, 4, 8, 12, {num_steps - 1}], windows: [first, last]")
    methods: dict[str, dict] = {}
    comparisons: list[tuple[str, str]] = []
    for lam in lams:
        check_int_range("frontier.lams entry", lam, 1, num_steps - 1, "λ = 0 is the study's `strong` method")
        nfe = num_steps + 2 * lam
        baselines = [f"ddim_nfe{nfe}"]
        methods[baselines[0]] = {"sampler": "ddim", "model": "strong", "T": nfe}
        if nfe % 2 == 0:  # difference guidance spends 2 NFE per step, so it matches only even budgets
            baselines.append(f"autoguidance_nfe{nfe}")
            methods[baselines[1]] = {"sampler": "autoguidance", "w": TUNED, "T": nfe // 2}
        for name, spec in fixed_lambda_methods(lam, windows, num_steps).items():
            methods[name] = spec
            comparisons += [(name, base) for base in ("strong", *baselines, *compare_with)]
    return methods, comparisons


def fixed_lambda_methods(lam: int, windows: Sequence[str], num_steps: int) -> dict[str, dict]:
    """W2SD reflecting λ steps in each window, named w2sd_lam<λ>_<window>; with λ = T − 1 both windows reflect the
    same steps, so only the first window is kept."""
    out = {}
    for window in windows if lam < num_steps - 1 else windows[:1]:
        check_choice("frontier.windows entry", window, WINDOWS)
        out[f"w2sd_lam{lam}_{window}"] = {"sampler": "w2sd", "lam": lam, "window": window}
    return out


def few_step_methods(steps: Sequence[int]) -> tuple[dict, list, dict[str, int]]:
    """Method specs, comparisons and (tuned method → the step count its w is tuned at) of the few-step study."""
    if not steps:
        raise ConfigError("few_step.steps is empty; e.g. few_step: {steps: [4, 8, 20, 50]}")
    methods, comparisons, tune_steps = {}, [], {}
    for T in steps:
        check_int_range("few_step.steps entry", T, 2)
        if T % 2:
            raise ConfigError(f"few_step.steps entry {T} is odd: W2SD's NFE 3T − 2 is then odd and difference "
                              f"guidance (2 NFE per step) cannot match it; use even step counts")
        nfe = 3 * T - 2
        names = {k: f"{k}_T{T}" for k in ("strong", "w2sd", "ddim_matched", "guidance_matched")}
        methods[names["strong"]] = {"sampler": "ddim", "model": "strong", "T": T}
        methods[names["w2sd"]] = {"sampler": "w2sd", "lam": T - 1, "T": T}
        methods[names["ddim_matched"]] = {"sampler": "ddim", "model": "strong", "T": nfe}
        methods[names["guidance_matched"]] = {"sampler": "autoguidance", "w": TUNED, "T": nfe // 2}
        tune_steps[names["guidance_matched"]] = nfe // 2
        comparisons += [(names["w2sd"], names[b]) for b in ("strong", "ddim_matched", "guidance_matched")]
        comparisons.append((names["guidance_matched"], names["strong"]))
    return methods, comparisons, tune_steps


def tuned_methods(methods: Mapping[str, tuple[int, dict]], named: Sequence[str] = ()) -> list[str]:
    """Difference-guidance methods whose w is tuned: those named in `tune.methods` and the generated baselines."""
    for name in named:
        if name not in methods or methods[name][1]["sampler"] != "autoguidance":
            raise ConfigError(f"tune.methods entry {name!r} is not a difference-guidance (autoguidance) method of this "
                              f"study; methods: {sorted(methods)}")
    return [name for name, (_, m) in methods.items() if m["sampler"] == "autoguidance" and
            (name in named or m["options"].get("w") == TUNED)]


def check_tuning(tune: Mapping | None, seeds: Sequence[int], metrics: Sequence[str], tuned: Sequence[str]) -> None:
    """Tuning needs a grid, held-out seeds disjoint from the reported ones and a metric the study measures."""
    if not tuned:
        return
    if not tune:
        raise ConfigError(f"methods {tuned} have a tuned w but the study has no `tune:` block; add "
                          f"tune: {{grid: [0.25, 0.5, 1.0, 2.0], seeds: [100, 101], metric: fd}}")
    grid = list(tune.get("grid") or [])
    if not grid or any(isinstance(w, bool) or not isinstance(w, (int, float)) for w in grid):
        raise ConfigError(f"tune.grid={grid} must be a non-empty list of guidance weights, e.g. [0.25, 0.5, 1, 2]")
    check_held_out("tune.seeds", list(tune.get("seeds") or []), seeds)
    check_choice("tune.metric", tune.get("metric"), list(metrics))


def best_weight(scores: Mapping[float, float], higher_is_better: bool) -> float:
    """The grid value with the best held-out score (the smaller w on a tie: less guidance, same quality)."""
    order = sorted(scores, key=lambda w: (-scores[w] if higher_is_better else scores[w], w))
    return order[0]


def adaptive_methods(quantiles: Sequence[float], num_steps: int, fixed: Sequence[str]) -> tuple[dict, list, dict]:
    """Method specs, comparisons and name → quantile of the adaptive-reflection methods (thresholds filled in later
    by calibration)."""
    methods, comparisons, quantile_of = {}, [], {}
    for q in quantiles:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q < 1:
            raise ConfigError(f"adaptive.quantiles entry {q!r} must be a number in (0, 1): the share of samples that "
                              f"stop reflecting at each level")
        name = f"w2sd_adaptive_q{q:g}"
        methods[name] = {"sampler": "w2sd", "lam": num_steps - 1, "window": "first"}
        quantile_of[name] = float(q)
        comparisons += [(name, base) for base in ("strong", *fixed)]
    return methods, comparisons, quantile_of


def check_held_out(name: str, held_out: Sequence[int], seeds: Sequence[int]) -> None:
    if not held_out or set(held_out) & set(seeds):
        raise ConfigError(f"{name}={list(held_out)} must be non-empty and disjoint from seeds={list(seeds)} "
                          f"(calibrated on held-out seeds, then reported on the others)")
