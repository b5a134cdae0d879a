# The shared stages of every digits study: validate → obtain nets and evaluator → sample per seed → summarise with CIs.
"""A study subclass says which nets it needs (`plan`), how they become denoisers (`denoisers`), what it measures on
one seed's samples (`measure`) and what it draws (`plot`). Every method starts from the same x_T per sample
(sample i of seed s uses seed s·10⁷ + i, one torch.Generator per sample), so results do not depend on batch size.
Per-seed metrics are summarised by w2sd.stats: the mean with a bootstrap CI over seeds, and for each comparison
(e.g. w2sd vs strong) the paired difference and the win rate over seeds. Optional matched-compute parts
(experiments/digits/compute.py): a `frontier:` block adds the λ cost frontier's methods, difference guidance
named in `tune.methods` is tuned on held-out `tune.seeds`, `adaptive:` adds adaptive reflection calibrated on
held-out seeds, and `comparisons:` adds (method, baseline) pairs."""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.digits import models as M
from experiments.digits.adapter import UNetEps
from experiments.digits.classifier import DigitClassifier
from experiments.digits.compute import (
    adaptive_methods,
    best_weight,
    check_held_out,
    check_tuning,
    few_step_methods,
    frontier_methods,
    tuned_methods,
)
from experiments.digits.training import torch_threads
from experiments.digits.unet import TinyUNet
from toy.metrics import delta_alignment, strong_trajectory
from w2sd.experiment import Experiment, RunResult
from w2sd.methods import resolve_method, resolve_sampler_config, run_method, sampler_defaults
from w2sd.results import config_hash
from w2sd.sampling import Denoiser, Schedule, calibrate_threshold
from w2sd.schedule import schedule_from_config
from w2sd.seeding import fork_generators, per_sample_generators, per_sample_randn, sample_seeds
from w2sd.stats import bootstrap_ci, paired_difference, win_rate
from w2sd.validation import ConfigError, check_int_range


def seed_counts(method: list[float], base: list[float], higher_is_better: bool | None) -> dict:
    """Per-seed wins / ties / losses of method against base, or for a metric with no better direction the seeds
    where it is higher / equal / lower."""
    if higher_is_better is None:
        counts = win_rate(method, base)
        return {"higher": counts.wins, "equal": counts.ties, "lower": counts.losses}
    return win_rate(*((method, base) if higher_is_better else (base, method))).as_dict()


class DigitsExperiment(Experiment):
    # (method, baseline) pairs reported as paired differences / win rates, when both methods are configured
    COMPARISONS = (("w2sd", "strong"), ("w2sd", "strong_equal_nfe"), ("s2wd", "strong"))
    # metric → True when higher is better (decides what a "win" is); None: no better direction (a measured
    # property such as the video world's dynamic degree), compared by its paired difference and higher/equal/lower
    HIGHER_IS_BETTER: Mapping[str, bool | None] = {}
    CONDITIONAL = False  # per-sample labels fixed in the denoisers (no sampler may evaluate part of the batch)

    # -- study hooks --------------------------------------------------------------------------------------------
    def plan(self) -> dict[str, M.Snapshot]:
        raise NotImplementedError

    def sample_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        raise NotImplementedError

    def measure(self, samples: torch.Tensor, n: int) -> dict[str, float]:
        raise NotImplementedError

    def setup_evaluation(self, classifier: DigitClassifier) -> None:
        raise NotImplementedError

    def plot(self, samples: dict[str, torch.Tensor], extra: dict, run_dir: Path) -> dict[str, Path]:
        return {}

    # -- validation ---------------------------------------------------------------------------------------------
    def validate(self) -> None:
        cfg = self.cfg
        seeds = list(cfg.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise ConfigError(f"seeds={seeds} must be a non-empty list of non-negative integers, e.g. [0, 1, 2, 3, 4]")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds={seeds} repeats a seed; repeated seeds would count the same samples twice")
        check_int_range("samples_per_seed", cfg.samples_per_seed, 2)
        sampler = self.sampler_cfg = resolve_sampler_config(OmegaConf.to_container(cfg.sampler, resolve=True))
        self.snapshots = self.plan()
        methods = OmegaConf.to_container(cfg.methods, resolve=True)
        if not methods:
            raise ConfigError(f"methods is empty; list at least one method (see conf/experiment/{cfg.name}.yaml)")
        requested = [tuple(pair) for pair in cfg.get("comparisons") or []]
        self.adaptive: dict[str, float] = {}  # adaptive-reflection method → calibration quantile
        self.tune_steps: dict[str, int] = {}  # tuned method → step count its w is tuned at (default: the study's T)
        generated, pairs = self.generated_methods(methods, sampler["T"])
        methods, requested = {**methods, **generated}, requested + pairs
        roles = {role: role for role in self.model_roles()}
        self.methods, self.nfe_per_sample = {}, {}
        for name, spec in methods.items():
            steps = spec.pop("T", sampler["T"])
            check_int_range(f"methods.{name}.T", steps, 2)
            self.methods[name] = (steps, resolve_method(name, spec, sampler_defaults(sampler), roles, steps))
        for method, base in requested:
            if method not in self.methods or base not in self.methods:
                raise ConfigError(f"comparison ({method}, {base}) names a method that is not configured; "
                                  f"methods: {sorted(self.methods)}")
        # the class's default pairs count only where both methods are configured
        self.comparisons = [p for p in self.COMPARISONS if set(p) <= set(self.methods)] + requested
        self.tuned = tuned_methods(self.methods, list((cfg.get("tune") or {}).get("methods") or []))
        check_tuning(cfg.get("tune"), seeds, list(self.HIGHER_IS_BETTER), self.tuned)
        self.classifier_spec = M.classifier_spec(cfg.digits)
        if not isinstance(cfg.train, bool):
            raise ConfigError(f"train={cfg.train!r} must be true or false")
        self.ckpt_dir = M.checkpoint_dir(cfg.digits, cfg.train, cfg.paths.cache_dir)
        M.check_available(self.snapshots, self.classifier_spec, self.ckpt_dir, cfg.train)

    def generated_methods(self, methods: dict, num_steps: int) -> tuple[dict, list]:
        """Methods (and comparisons) a study adds to the configured ones: the few-step study's, the λ frontier's and
        adaptive reflection's, if asked for."""
        if self.cfg.get("few_step"):
            few, few_pairs, self.tune_steps = few_step_methods(list(self.cfg.few_step.steps))
            if self.cfg.get("frontier"):
                raise ConfigError("few_step and frontier are separate studies; keep one of the two blocks")
            return few, few_pairs
        if not self.cfg.get("frontier"):
            return {}, []
        if "strong" not in methods:
            raise ConfigError("frontier needs a `strong` method (standard DDIM, the λ = 0 point)")
        frontier = self.cfg.frontier
        out, pairs = frontier_methods(list(frontier.lams), list(frontier.windows), num_steps,
                                      list(frontier.get("compare_with") or []))
        if self.cfg.get("adaptive"):
            if self.CONDITIONAL:
                raise ConfigError("adaptive reflection evaluates part of the batch, which the per-sample labels of a "
                                  "class-conditional net cannot follow; remove `adaptive:` from this study")
            check_held_out("adaptive.seeds", list(self.cfg.adaptive.seeds), list(self.cfg.seeds))
            fixed = [name for name in out if name.startswith("w2sd_")]
            adaptive, adaptive_pairs, self.adaptive = adaptive_methods(list(self.cfg.adaptive.quantiles), num_steps,
                                                                      fixed)
            out, pairs = {**out, **adaptive}, pairs + adaptive_pairs
        return out, pairs

    def model_roles(self) -> list[str]:
        return list(self.snapshots)

    def adapter(self, net: TinyUNet, labels: torch.Tensor | None = None, guidance: float = 1.0) -> UNetEps:
        return UNetEps(net, self.schedule(2), labels, guidance, self.cfg.digits.clip_x0)

    def schedule(self, steps: int) -> Schedule:
        return schedule_from_config(steps, self.sampler_cfg["schedule"])

    # -- stages -------------------------------------------------------------------------------------------------
    def logger_factory(self, run_dir: Path):
        if not self.cfg.train or not (self.cfg.get("logger") and self.cfg.logger.get("enabled", False)):
            return None

        def make(name: str) -> object:
            from lightning.pytorch.loggers import WandbLogger

            return WandbLogger(project=self.cfg.logger.get("project", "w2sd"), name=f"{self.cfg.name}-train-{name}",
                               save_dir=str(run_dir), offline=True, tags=[*self.wandb_tags(), "training"])

        return make

    def initial_noise(self, seed: int, n: int) -> tuple[torch.Tensor, list[torch.Generator]]:
        gens = per_sample_generators(sample_seeds(seed, n))
        return per_sample_randn(gens, self.sample_shape()), gens

    def sample_seed(self, models: dict[str, Denoiser], seed: int,
                    methods: dict[str, tuple[int, dict]] | None = None) -> tuple[dict, dict, dict]:
        samples, nfe, wall = {}, {}, {}
        x_T, gens = self.initial_noise(seed, self.cfg.samples_per_seed)
        for name, (steps, method) in (methods or self.methods).items():
            start = time.perf_counter()  # shared x_T, forked generators: every method continues the same streams
            out = run_method(method, models, x_T.clone(), self.schedule(steps), generators=fork_generators(gens))
            wall[name], nfe[name], samples[name] = time.perf_counter() - start, out.nfe, out.x
            self.nfe_per_sample[name] = out.nfe_per_sample
        return samples, nfe, wall

    def calibrate_adaptive(self, nets: dict[str, TinyUNet]) -> dict | None:
        """Per-level thresholds of each adaptive method: its quantile of full W2SD's reflection displacements on the
        held-out `adaptive.seeds` (one batch of all their samples)."""
        if not self.adaptive:
            return None
        x = torch.cat([self.initial_noise(seed, self.cfg.samples_per_seed)[0] for seed in self.cfg.adaptive.seeds])
        models = self.denoisers(nets, x.shape[0])
        thresholds = {}
        for name, quantile in self.adaptive.items():
            steps, method = self.methods[name]
            options = {k: v for k, v in method["options"].items() if k != "threshold"}
            thresholds[name] = calibrate_threshold(models["strong"], models["weak"], x, self.schedule(steps),
                                                   quantile, **options)
            method["options"]["threshold"] = thresholds[name]
        return {"seeds": list(self.cfg.adaptive.seeds), "quantiles": self.adaptive, "thresholds": thresholds}

    def tune_guidance(self, models: dict[str, Denoiser]) -> dict | None:
        """Pick w of every tuned difference-guidance method on the held-out seeds, at the study's T (the few-step
        study: each at its own step count; the record then lists one entry per step count under `groups`)."""
        if not self.tuned:
            return None
        groups: dict[int, list[str]] = {}
        for name in self.tuned:
            groups.setdefault(self.tune_steps.get(name, self.sampler_cfg["T"]), []).append(name)
        records = [self.tune_group(models, steps, names) for steps, names in sorted(groups.items())]
        if len(records) == 1:
            return records[0]
        return {"metric": self.cfg.tune.metric, "seeds": list(self.cfg.tune.seeds), "groups": records}

    def tune_group(self, models: dict[str, Denoiser], steps: int, tuned: list[str]) -> dict:
        tune = self.cfg.tune
        template = self.methods[tuned[0]][1]
        candidates = {f"w={w}": (steps, {**template, "options": {**template["options"], "w": float(w)}})
                      for w in tune.grid}
        scores: dict[float, list[float]] = {float(w): [] for w in tune.grid}
        for seed in tune.seeds:
            samples, _, _ = self.sample_seed(models, seed, candidates)
            for w in tune.grid:
                scores[float(w)].append(self.measure(samples[f"w={w}"], self.cfg.samples_per_seed)[tune.metric])
        means = {w: sum(v) / len(v) for w, v in scores.items()}
        chosen = best_weight(means, self.HIGHER_IS_BETTER[tune.metric])
        for name in tuned:
            self.methods[name][1]["options"]["w"] = chosen
        return {"metric": tune.metric, "seeds": list(tune.seeds), "T": steps, "scores": [[w, m] for w, m in
                means.items()], "w": chosen, "methods": tuned}

    def delta_diagnostic(self, nets: dict[str, TinyUNet]) -> dict | None:
        """Δ1 = s_strong − s_weak vs Δ2 = s_ideal − s_strong along strong DDIM paths (seed of the first run)."""
        if not {"strong", "weak", "ideal"} <= set(self.model_roles()) or not self.cfg.diagnostic_samples:
            return None
        n = min(self.cfg.samples_per_seed, self.cfg.diagnostic_samples)
        models = self.denoisers(nets, n)
        x_T, _ = self.initial_noise(self.cfg.seeds[0], n)
        schedule = self.schedule(self.sampler_cfg["T"])
        return delta_alignment(strong_trajectory(models["strong"], x_T, schedule), schedule, models["strong"],
                               models["weak"], models["ideal"])

    def summarise(self, per_seed: dict[str, dict[str, list[float]]], nfe: dict[str, int]) -> tuple[dict, dict]:
        metrics: dict[str, dict] = {}
        for name, values in per_seed.items():
            row: dict = {}
            for metric, vals in values.items():
                ci = bootstrap_ci(vals)
                row[metric], row[f"{metric}_ci"] = ci.mean, [ci.low, ci.high]
            row["nfe"], row["per_seed"] = nfe[name], values
            metrics[name] = row
        comparisons = {}
        for method, base in self.comparisons:
            comparisons[f"{method}_vs_{base}"] = {
                metric: {**paired_difference(per_seed[method][metric], per_seed[base][metric]).as_dict(),
                         **seed_counts(per_seed[method][metric], per_seed[base][metric], higher)}
                for metric, higher in self.HIGHER_IS_BETTER.items()}
        return metrics, comparisons

    def run(self, run_dir: Path) -> RunResult:
        with torch_threads(self.cfg.digits.torch_threads):
            return self.run_stages(run_dir)

    def run_stages(self, run_dir: Path) -> RunResult:
        start, cpu_start = time.perf_counter(), time.process_time()
        logger_for = self.logger_factory(run_dir)
        classifier, classifier_info = M.obtain_classifier(self.classifier_spec, self.ckpt_dir, self.cfg.train,
                                                          logger_for)
        nets, net_info = M.obtain_unets(self.snapshots, self.ckpt_dir, self.cfg.train, logger_for)
        prepare_time = time.perf_counter() - start
        self.setup_evaluation(classifier)
        n = self.cfg.samples_per_seed
        models = self.denoisers(nets, n)
        tuning, adaptive = self.tune_guidance(models), self.calibrate_adaptive(nets)
        per_seed: dict[str, dict[str, list[float]]] = {name: {} for name in self.methods}
        wall_total: dict[str, float] = dict.fromkeys(self.methods, 0.0)
        samples_by_seed: list[dict[str, torch.Tensor]] = []
        for seed in self.cfg.seeds:
            samples, nfe, wall = self.sample_seed(models, seed)
            samples_by_seed.append(samples)
            for name, x in samples.items():
                wall_total[name] += wall[name]
                for metric, value in self.measure(x, n).items():
                    per_seed[name].setdefault(metric, []).append(value)
                per_seed[name].setdefault("nfe_per_sample", []).append(self.nfe_per_sample[name])
        metrics, comparisons = self.summarise(per_seed, nfe)
        extra = {"comparisons": comparisons, "delta_alignment": self.delta_diagnostic(nets),
                 "classifier": {**classifier_info, "config_hash": config_hash(self.classifier_spec)},
                 "nets": net_info, "prepare_time_s": prepare_time, "lam": self.sampler_cfg["lam"],
                 "method_T": {name: steps for name, (steps, _) in self.methods.items()},
                 "num_seeds": len(self.cfg.seeds), "tuning": tuning, "adaptive": adaptive,
                 "method_options": {name: m["options"] for name, (_, m) in self.methods.items()}}
        extra.update(self.study_extra(samples_by_seed))
        # CPU seconds of the whole study, summed over digits.torch_threads: with one thread, its wall time on an idle
        # core whatever the machine's load
        extra["cpu_time_s"] = time.process_time() - cpu_start
        figures = self.plot(samples_by_seed[0], extra, run_dir) if self.cfg.figures else {}
        return RunResult(metrics=metrics, nfe=nfe, wall_time_s=wall_total, figures=figures, extra=extra)

    def study_extra(self, samples_by_seed: list[dict[str, torch.Tensor]]) -> dict:
        """Study-specific entries of `extra`, from every seed's samples (method → samples, in seed order)."""
        return {}
