# Is Δ1 aligned with Δ2? The paper's App. E.1 study with training-length MLP pairs, and the exact-mixture version.
"""Per seed, three ε-MLPs are trained on the same (ideal) mixture for training lengths in the ratio 100:300:500
(paper App. E.1: weak / strong / "ideal" CIFAR-10 models at 100/300/500 epochs). Along the strong model's DDIM
trajectory, per timestep, we measure the cosine of Δ1 = s_strong − s_weak and Δ2 = s_ideal − s_strong
(toy.metrics.delta_alignment) in three variants: `trained` (Δ2 from the longest-trained MLP, as in the paper),
`trained_vs_exact` (Δ2 from the exact ideal score, which the paper cannot compute) and `exact` (the world's
biased strong/weak mixtures with exact scores). The training-length pair is also used as a W2SD pair
(methods), so the table shows whether an under-trained weak model helps sampling."""
from __future__ import annotations

import time
from pathlib import Path

from toy.ablations import SCALAR_METRICS, summarize, toy_config
from toy.experiment import ROLES, ToyGMMExperiment
from toy.gmm import ExactDenoiser
from toy.metrics import delta_alignment, strong_trajectory
from toy.trained import MLPEpsDenoiser, train_eps_mlp
from w2sd.experiment import RunResult
from w2sd.sampling import Denoiser
from w2sd.stats import bootstrap_ci
from w2sd.validation import ConfigError, check_int_range

VARIANTS = ("trained", "trained_vs_exact", "exact")


def curve_summary(curves: list[list[float]]) -> dict[str, list[float]]:
    """Per-timestep mean and 95% bootstrap CI over seeds of a list of per-seed curves."""
    intervals = [bootstrap_ci(list(column)) for column in zip(*curves)]
    return {"mean": [c.mean for c in intervals], "ci_low": [c.low for c in intervals],
            "ci_high": [c.high for c in intervals]}


class DeltaAlignmentExperiment(ToyGMMExperiment):
    """Stages per seed: train the training-length trio → strong trajectory → Δ1·Δ2 cosines → sample methods."""

    def validate(self) -> None:
        super().validate()
        cfg = self.cfg
        if cfg.model.kind != "trained":
            raise ConfigError(f"model={cfg.model.kind} but delta_alignment trains its MLPs; use model=trained")
        check_int_range("num_seeds", cfg.get("num_seeds"), 1, None, "list at least one seed (5 or more for CIs)")
        lengths = cfg.get("training_steps")
        if lengths is None or set(lengths) != set(ROLES):
            raise ConfigError(f"training_steps={lengths} must give max_steps for each of {list(ROLES)}")
        for role in ROLES:
            check_int_range(f"training_steps.{role}", lengths[role], 1)
        if not lengths.weak < lengths.strong < lengths.ideal:
            raise ConfigError(f"training_steps={dict(lengths)} must grow weak < strong < ideal (paper: 100/300/500)")
        self.seeds = [int(cfg.seed) + k for k in range(cfg.num_seeds)]
        self.runs = [ToyGMMExperiment(toy_config(cfg, seed)) for seed in self.seeds]
        for run in self.runs:
            run.validate()

    def train_trio(self, seed: int) -> tuple[dict[str, Denoiser], dict]:
        """weak/strong/ideal MLPs on the ideal mixture, differing only in training length (and sharing `seed`)."""
        model, models, info = self.cfg.model, {}, {}
        for role in ROLES:
            net, info[role] = train_eps_mlp(
                self.mixtures["ideal"], self.schedule, hidden=model.hidden, layers=model.layers,
                train_samples=model.train_samples, max_steps=self.cfg.training_steps[role],
                batch_size=model.batch_size, lr=model.lr, seed=seed, cache_dir=Path(self.cfg.paths.cache_dir) / "toy")
            models[role] = MLPEpsDenoiser(net, self.schedule.num_train_timesteps)
        return models, info

    def alignment(self, seeded: ToyGMMExperiment, trained: dict[str, Denoiser]) -> dict[str, dict[str, list[float]]]:
        """Δ1·Δ2 cosines per variant along each variant's strong DDIM trajectory from the seed's shared x_T."""
        exact = {r: ExactDenoiser(seeded.mixtures[r], self.schedule) for r in ROLES}
        x_T, _ = seeded.initial_noise(min(self.cfg.num_samples, self.cfg.diagnostic_samples))
        out = {}
        for variant, models in (("trained", trained), ("trained_vs_exact", {**trained, "ideal": exact["ideal"]}),
                                ("exact", exact)):
            out[variant] = delta_alignment(strong_trajectory(models["strong"], x_T, self.schedule), self.schedule,
                                           models["strong"], models["weak"], models["ideal"])
        return out

    def run(self, run_dir: Path) -> RunResult:
        curves: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
        per_seed: dict[str, dict[str, list[float]]] = {v: {"mean_cos": [], "aligned_steps": []} for v in VARIANTS}
        sampled: dict[str, dict[str, list[float]]] = {}
        training, alignment, nfe = {}, {}, {}
        train_time = 0.0
        for seed, seeded in zip(self.seeds, self.runs):
            start = time.perf_counter()
            models, training[seed] = self.train_trio(seed)
            train_time += time.perf_counter() - start
            alignment = self.alignment(seeded, models)
            for variant, result in alignment.items():
                cos = result["cos_flat"]
                curves[variant].append(cos)
                per_seed[variant]["mean_cos"].append(sum(cos) / len(cos))
                per_seed[variant]["aligned_steps"].append(sum(c > 0 for c in cos) / len(cos))
            samples, nfe, _ = seeded.sample(models)
            for name, row in seeded.evaluate(samples, nfe).items():
                for key in SCALAR_METRICS:
                    sampled.setdefault(name, {}).setdefault(key, []).append(row[key])
        metrics, intervals, wins = summarize(sampled, "strong")
        for name in metrics:
            metrics[name]["nfe"] = nfe[name]
        alignment_stats = {v: {k: bootstrap_ci(vals).as_dict() for k, vals in per_seed[v].items()} for v in VARIANTS}
        for variant in VARIANTS:
            metrics[f"cos(Δ1,Δ2) {variant}"] = {k: s["mean"] for k, s in alignment_stats[variant].items()}
        extra = {"seeds": self.seeds, "training_steps": dict(self.cfg.training_steps), "training": training,
                 "train_time_s": train_time, "timestep": alignment["exact"]["timestep"],
                 "sigma": alignment["exact"]["sigma"], "cos_curves": {v: curve_summary(curves[v]) for v in VARIANTS},
                 "cos_per_seed": curves, "alignment_per_seed": per_seed, "alignment_ci": alignment_stats,
                 "per_seed": sampled, "ci": intervals, "win_rates": wins, "baseline": "strong"}
        return RunResult(metrics=metrics, nfe=nfe, extra=extra)
