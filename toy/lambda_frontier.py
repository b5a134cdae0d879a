# λ cost frontier and adaptive reflection on a toy GMM world (issue 14 parts 2–3), over seeds with paired CIs.
"""W2SD reflecting λ steps in the first or last window (NFE T + 2λ) and adaptive reflection (λ = T − 1, per-level
thresholds calibrated on a held-out seed, `w2sd.sampling.calibrate_threshold`) on the exact-ε mixtures of
ToyGMMExperiment, scored by its metrics per seed. The cost of every method is its mean evaluations per sample
(`nfe_per_sample`), so adaptive points sit on the same NFE axis as the fixed-λ frontier. Method names and the
adaptive calibration match the digits frontier studies (experiments/digits/compute.py)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.digits.compute import adaptive_methods, check_held_out, fixed_lambda_methods
from toy.experiment import ToyGMMExperiment
from toy.metrics import sample_metrics
from w2sd.experiment import RunResult
from w2sd.methods import resolve_method, run_method, sampler_defaults
from w2sd.sampling import calibrate_threshold
from w2sd.seeding import fork_generators, per_sample_generators, per_sample_randn, sample_seeds
from w2sd.stats import bootstrap_ci, paired_difference, win_rate
from w2sd.validation import ConfigError

ERRORS = ("tv_mode_weights", "w1")  # lower is better
REPORTED = ("target_mode_weight", *ERRORS)


class ToyFrontierExperiment(ToyGMMExperiment):
    """Config: the toy world/model groups, `seeds`, `num_samples` per seed, `frontier: {lams, windows}`,
    `adaptive: {quantiles, seeds}` and `methods` (at least `strong`, the λ = 0 point)."""

    def validate(self) -> None:
        super().validate()
        cfg, T = self.cfg, self.schedule.num_steps
        seeds = list(cfg.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds={seeds} must be a non-empty list of distinct seeds, e.g. [0, 1, 2, 3, 4]")
        if "strong" not in self.methods:
            raise ConfigError("the toy frontier needs a `strong` method (standard DDIM, the λ = 0 point)")
        check_held_out("adaptive.seeds", list(cfg.adaptive.seeds), seeds)
        generated = {}
        for lam in cfg.frontier.lams:
            generated.update(fixed_lambda_methods(lam, list(cfg.frontier.windows), T))
        self.fixed = list(generated)
        adaptive, self.pairs, self.adaptive = adaptive_methods(list(cfg.adaptive.quantiles), T, self.fixed)
        names = {role: role for role in ("ideal", "strong", "weak")}
        defaults = sampler_defaults(self.sampler_cfg)
        for name, spec in {**generated, **adaptive}.items():
            self.methods[name] = resolve_method(name, spec, defaults, names, T)
        self.pairs += [(name, "strong") for name in self.fixed]

    def noise(self, seed: int) -> tuple[torch.Tensor, list[torch.Generator]]:
        gens = per_sample_generators(sample_seeds(seed, self.cfg.num_samples))
        return per_sample_randn(gens, (self.mixtures["ideal"].dim,), torch.float64), gens

    def calibrate(self, models: dict) -> dict:
        x = torch.cat([self.noise(seed)[0] for seed in self.cfg.adaptive.seeds])
        thresholds = {}
        for name, quantile in self.adaptive.items():
            options = {k: v for k, v in self.methods[name]["options"].items() if k != "threshold"}
            thresholds[name] = calibrate_threshold(models["strong"], models["weak"], x, self.schedule, quantile,
                                                   **options)
            self.methods[name]["options"]["threshold"] = thresholds[name]
        return thresholds

    def run(self, run_dir: Path) -> RunResult:
        start, cpu_start = time.perf_counter(), time.process_time()
        models, _ = self.build_models(self.schedule)
        thresholds = self.calibrate(models)
        ideal = self.mixtures["ideal"]
        per_seed: dict[str, dict[str, list[float]]] = {name: {} for name in self.methods}
        nfe: dict[str, int] = {}
        for seed in self.cfg.seeds:
            reference = ideal.sample(self.cfg.num_samples, torch.Generator().manual_seed(seed + 1))
            x_T, gens = self.noise(seed)
            for name, method in self.methods.items():  # shared x_T, forked generators: the same streams for all
                out = run_method(method, models, x_T.clone(), self.schedule, generators=fork_generators(gens))
                row = sample_metrics(out.x, ideal, reference, self.cfg.world.target_mode)
                nfe[name] = out.nfe
                for key in REPORTED:
                    per_seed[name].setdefault(key, []).append(row[key])
                per_seed[name].setdefault("nfe_per_sample", []).append(out.nfe_per_sample)
        metrics = {}
        for name, values in per_seed.items():
            metrics[name] = {"nfe": nfe[name], "per_seed": values}
            for key, vals in values.items():
                ci = bootstrap_ci(vals)
                metrics[name][key], metrics[name][f"{key}_ci"] = ci.mean, [ci.low, ci.high]
        comparisons = {f"{a}_vs_{b}": {k: {**paired_difference(per_seed[a][k], per_seed[b][k]).as_dict(),
                                           **win_rate([-v for v in per_seed[a][k]],
                                                      [-v for v in per_seed[b][k]]).as_dict()}
                                       for k in ERRORS} for a, b in self.pairs}
        extra = {"comparisons": comparisons, "adaptive": {"seeds": list(self.cfg.adaptive.seeds),
                                                          "quantiles": self.adaptive, "thresholds": thresholds},
                 "num_seeds": len(self.cfg.seeds), "cpu_time_s": time.process_time() - cpu_start,
                 "frontier": OmegaConf.to_container(self.cfg.frontier), "T": self.schedule.num_steps}
        return RunResult(metrics=metrics, nfe=nfe, wall_time_s={"total": time.perf_counter() - start}, extra=extra)
