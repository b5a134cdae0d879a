# Toy ablation jobs: one point of an ablation sweep, repeated over seeds, with bootstrap CIs and win rates.
"""A job is a toy GMM config plus a few ablation knobs: `num_seeds`, `ablation.weak_bias_ratio`,
`ablation.weak_gap_scale`, `ablation.baseline` and `lam_fraction` inside a method spec. `toy_config` turns the job
into plain toy configs, one per seed, and ToyGMMExperiment's stages sample and score them; this module adds only
the repetition over seeds and the statistics (w2sd.stats). Sweeps over the knobs are Hydra multiruns
(conf/experiment/ablation_*.yaml)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from toy.experiment import ToyGMMExperiment
from w2sd.experiment import Experiment, RunResult
from w2sd.sampling import Denoiser
from w2sd.stats import bootstrap_ci, win_rate
from w2sd.validation import ConfigError, check_int_range, check_probabilities

SCALAR_METRICS = ("target_mode_weight", "tv_mode_weights", "w1", "nll", "within_mode_std")
ERROR_METRICS = ("tv_mode_weights", "w1")  # lower is better; win rates against the baseline compare these
ABLATION_KEYS = ("baseline", "weak_bias_ratio", "weak_gap_scale")


def weights_with_bias_ratio(ideal: list[float], strong: list[float], ratio: float) -> list[float]:
    """Weak mixture weights whose deviation from the ideal is `ratio` times the strong model's:
    π_w = π* + r·(π_s − π*). r = 2 is the camera-ready theory's ideal pair (paper.md §1.6), r = 1 makes the weak
    model equal to the strong one (no gap), r < 1 reverses the gap (the weak model is nearer the ideal)."""
    weights = [i + ratio * (s - i) for i, s in zip(ideal, strong)]
    if min(weights) < 0:
        deviation = max(i / (i - s) for i, s in zip(ideal, strong) if s < i)
        raise ConfigError(f"ablation.weak_bias_ratio={ratio} gives negative weak weights {weights}; with these "
                          f"strong weights the ratio must be at most {deviation:.4g}")
    if max(weights) > 1:
        raise ConfigError(f"ablation.weak_bias_ratio={ratio} gives weak weights above 1 ({weights}); use a ratio "
                          "closer to 1")
    return check_probabilities("weak weights from ablation.weak_bias_ratio", weights)


def resolve_lam_fraction(methods: dict, num_steps: int) -> dict:
    """`lam_fraction: f` in a method spec means λ = ⌊f·T⌋ (capped at T − 1), so one spec serves every T of a
    sweep, e.g. the paper's equal-time W2SD with λ = ⌊T/2⌋ (paper §5.2)."""
    out = {}
    for name, spec in methods.items():
        spec = dict(spec)
        if "lam_fraction" in spec:
            fraction = spec.pop("lam_fraction")
            if "lam" in spec:
                raise ConfigError(f"methods.{name} sets both lam and lam_fraction; keep one")
            if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
                raise ConfigError(f"methods.{name}.lam_fraction={fraction!r} must be a number in [0, 1]")
            spec["lam"] = min(num_steps - 1, int(fraction * num_steps))
        out[name] = spec
    return out


def toy_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The plain ToyGMMExperiment config of one seed of an ablation job."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    ablation = plain.pop("ablation", None) or {}
    plain.pop("num_seeds", None)
    plain["seed"] = seed
    plain["methods"] = resolve_lam_fraction(plain["methods"], plain["sampler"]["T"])
    world = plain["world"]
    if ablation.get("weak_bias_ratio") is not None:
        world["weak_weights"] = weights_with_bias_ratio(world["ideal_weights"], world["strong_weights"],
                                                        float(ablation["weak_bias_ratio"]))
    return OmegaConf.create(plain)


class ScaledGapDenoiser:
    """A weak model ε_s + γ·(ε_w − ε_s) whose gap to the strong model is scaled by γ, like a CFG or LoRA scale
    (paper §5.1 sweeps): γ = 1 is the original weak model, 0 the strong one, γ < 0 a reversed gap. One call of it
    counts as one NFE, as one batched CFG evaluation does."""

    def __init__(self, strong: Denoiser, weak: Denoiser, scale: float) -> None:
        self.strong, self.weak, self.scale = strong, weak, scale

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        e_s = self.strong(x, t)
        return e_s + self.scale * (self.weak(x, t) - e_s)


def summarize(per_seed: dict[str, dict[str, list[float]]], baseline: str) -> tuple[dict, dict, dict]:
    """Per method: mean ± 95% bootstrap CI of every metric over seeds, and the per-seed win rate on each error
    metric against `baseline` (a win = strictly lower error on the same seed; ties are reported separately)."""
    metrics, intervals, wins = {}, {}, {}
    for method, values in per_seed.items():
        intervals[method] = {k: bootstrap_ci(v).as_dict() for k, v in values.items()}
        metrics[method] = {k: ci["mean"] for k, ci in intervals[method].items()}
        if method != baseline:
            wins[method] = {k: win_rate([-v for v in values[k]], [-v for v in per_seed[baseline][k]]).as_dict()
                            for k in ERROR_METRICS}
            metrics[method].update({f"win_{k}": w["win_rate"] for k, w in wins[method].items()})
    return metrics, intervals, wins


class ToyAblationExperiment(Experiment):
    """Runs the toy sample → evaluate stages for seeds seed … seed + num_seeds − 1 with shared models."""

    def validate(self) -> None:
        cfg = self.cfg
        if cfg.get("ablation") is None or cfg.get("num_seeds") is None:
            raise ConfigError("ablation jobs need the `ablation` and `num_seeds` keys; add `- /ablation: toy` to "
                              "the experiment's defaults (see conf/experiment/ablation_reflection_steps.yaml)")
        unknown = sorted(set(cfg.ablation) - set(ABLATION_KEYS))
        if unknown:
            raise ConfigError(f"unknown ablation key(s) {unknown}; known: {list(ABLATION_KEYS)}")
        check_int_range("num_seeds", cfg.num_seeds, 1, None, "list at least one seed (5 or more for the CIs)")
        for key in ("weak_bias_ratio", "weak_gap_scale"):
            value = cfg.ablation[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"ablation.{key}={value!r} must be a number or null")
        if cfg.ablation.baseline not in cfg.methods:
            raise ConfigError(f"ablation.baseline={cfg.ablation.baseline!r} is not one of the methods "
                              f"{list(cfg.methods)}; win rates need it")
        self.seeds = [int(cfg.seed) + k for k in range(cfg.num_seeds)]
        self.runs = [ToyGMMExperiment(toy_config(cfg, seed)) for seed in self.seeds]
        for run in self.runs:
            run.validate()

    def build_models(self) -> tuple[dict[str, Denoiser], dict]:
        first = self.runs[0]
        models, info = first.build_models(first.schedule)
        scale = self.cfg.ablation.weak_gap_scale
        if scale is not None:
            models["weak"] = ScaledGapDenoiser(models["strong"], models["weak"], float(scale))
        return models, info

    def run(self, run_dir: Path) -> RunResult:
        start = time.perf_counter()
        models, train_info = self.build_models()
        train_time = time.perf_counter() - start
        per_seed: dict[str, dict[str, list[float]]] = {}
        wall: dict[str, float] = {}
        for run in self.runs:
            samples, nfe, seconds = run.sample(models)
            for method, row in run.evaluate(samples, nfe).items():
                for key in SCALAR_METRICS:
                    per_seed.setdefault(method, {}).setdefault(key, []).append(row[key])
                wall[method] = wall.get(method, 0.0) + seconds[method]
        metrics, intervals, wins = summarize(per_seed, self.cfg.ablation.baseline)
        for method in metrics:
            metrics[method]["nfe"] = nfe[method]
        first = self.runs[0]
        extra = {"seeds": self.seeds, "per_seed": per_seed, "ci": intervals, "win_rates": wins,
                 "baseline": self.cfg.ablation.baseline, "resolved_methods": first.methods,
                 "lam": first.sampler_cfg["lam"], "weak_weights": first.mixtures["weak"].weights.tolist(),
                 "strong_weights": first.mixtures["strong"].weights.tolist(),
                 "ideal_weights": first.mixtures["ideal"].weights.tolist(),
                 "training": train_info, "train_time_s": train_time}
        return RunResult(metrics=metrics, nfe=nfe, wall_time_s=wall, extra=extra)
