# The toy Gaussian-mixture study (paper Figs. 4–5): weak, strong, ideal, W2SD and baselines on exact or trained ε.
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from toy.gmm import ExactDenoiser, GaussianMixture
from toy.metrics import delta_alignment, sample_metrics, strong_trajectory
from toy.trained import MLPEpsDenoiser, train_eps_mlp
from w2sd.experiment import Experiment, RunResult
from w2sd.methods import resolve_method, resolve_sampler_config, run_method, sampler_defaults
from w2sd.sampling import Denoiser, Schedule, check_inversion, sample_ddim, sample_w2sd
from w2sd.schedule import schedule_from_config
from w2sd.seeding import fork_generators, per_sample_generators, per_sample_randn, sample_seeds
from w2sd.validation import ConfigError, check_choice, check_int_range

ROLES = ("ideal", "strong", "weak")
class ToyGMMExperiment(Experiment):
    """Stages: validate → setup (mixtures, schedule) → train (ε-models) → sample → evaluate → diagnose → plot."""

    def validate(self) -> None:
        cfg = self.cfg
        if cfg.get("world") is None or cfg.get("model") is None:
            raise ConfigError("toy experiments need world=gmm_1d|gmm_2d and model=exact|trained")
        world = cfg.world
        self.mixtures = {role: GaussianMixture.build(world.means, world.std, list(world[f"{role}_weights"]),
                                                     name=f"world.{role}_weights") for role in ROLES}
        check_int_range("world.target_mode", world.target_mode, 0, len(world.means) - 1)
        check_choice("model.kind", cfg.model.kind, ("exact", "trained"))
        sampler = resolve_sampler_config(OmegaConf.to_container(cfg.sampler, resolve=True))
        self.sampler_cfg = sampler
        self.schedule = schedule_from_config(sampler["T"], sampler["schedule"])
        check_int_range("num_samples", cfg.num_samples, 2)
        check_int_range("num_trajectories", cfg.num_trajectories, 1)
        check_int_range("trajectory_steps", cfg.trajectory_steps, 2)
        names = {role: role for role in ROLES}
        methods = OmegaConf.to_container(cfg.methods, resolve=True)
        if not methods:
            raise ConfigError("methods is empty; list at least one method (see conf/experiment/toy_gmm.yaml)")
        self.methods = {name: resolve_method(name, spec, sampler_defaults(sampler), names, sampler["T"])
                        for name, spec in methods.items()}
        if self.schedule.prediction != "epsilon" and cfg.model.kind == "trained":
            raise ConfigError("model=trained trains ε-prediction MLPs on a VP schedule; on sampler/schedule=flow_match "
                              "use model=exact (exact mixture velocities)")
        for name, method in self.methods.items():
            if "inversion" in method["options"]:
                check_inversion(method["options"]["inversion"], self.schedule, f"methods.{name}.inversion")

    # -- stages -------------------------------------------------------------------------------------------
    def build_models(self, schedule: Schedule) -> tuple[dict[str, Denoiser], dict]:
        model = self.cfg.model
        if model.kind == "exact":
            return {r: ExactDenoiser(self.mixtures[r], schedule) for r in ROLES}, {}
        models, info = {}, {}
        for role in ROLES:
            net, info[role] = train_eps_mlp(
                self.mixtures[role], schedule, hidden=model.hidden, layers=model.layers,
                train_samples=model.train_samples, max_steps=model.max_steps, batch_size=model.batch_size,
                lr=model.lr, seed=model.seed, cache_dir=Path(self.cfg.paths.cache_dir) / "toy")
            models[role] = MLPEpsDenoiser(net, schedule.num_train_timesteps)
        return models, info

    def initial_noise(self, n: int, offset: int = 0) -> tuple[torch.Tensor, list[torch.Generator]]:
        gens = per_sample_generators(sample_seeds(self.cfg.seed, n + offset)[offset:])
        return per_sample_randn(gens, (self.mixtures["ideal"].dim,), torch.float64), gens

    def sample(self, models: dict[str, Denoiser]) -> tuple[dict, dict, dict]:
        samples, nfe, wall = {}, {}, {}
        x_T, gens = self.initial_noise(self.cfg.num_samples)
        for name, method in self.methods.items():
            start = time.perf_counter()  # shared x_T, forked generators: every method continues the same streams
            out = run_method(method, models, x_T.clone(), self.schedule, generators=fork_generators(gens))
            wall[name], nfe[name], samples[name] = time.perf_counter() - start, out.nfe, out.x
        return samples, nfe, wall

    def evaluate(self, samples: dict[str, torch.Tensor], nfe: dict[str, int]) -> dict:
        ideal = self.mixtures["ideal"]
        reference = ideal.sample(self.cfg.num_samples, torch.Generator().manual_seed(self.cfg.seed + 1))
        metrics = {}
        for name, x in samples.items():
            metrics[name] = sample_metrics(x, ideal, reference, self.cfg.world.target_mode)
            metrics[name]["nfe"] = nfe[name]
        return metrics

    def diagnose(self, models: dict[str, Denoiser]) -> dict:
        """Δ1·Δ2 cosine along strong DDIM trajectories (Δ2 always uses the exact ideal score)."""
        n = min(self.cfg.num_samples, self.cfg.diagnostic_samples)
        x_T, _ = self.initial_noise(n)
        ideal = ExactDenoiser(self.mixtures["ideal"], self.schedule)
        return delta_alignment(strong_trajectory(models["strong"], x_T, self.schedule), self.schedule,
                               models["strong"], models["weak"], ideal)

    def trajectory_paths(self, models: dict[str, Denoiser]) -> dict[str, torch.Tensor]:
        """Strong vs W2SD paths from shared start points on a short schedule (paper Fig. 4 uses T = 10)."""
        sched = schedule_from_config(self.cfg.trajectory_steps, self.sampler_cfg["schedule"])
        x_T, _ = self.initial_noise(self.cfg.num_trajectories)
        paths = {}
        for name in ("strong", "w2sd"):
            record = [x_T]
            callback = lambda s, rec=record: rec.append(s["x"])  # noqa: E731
            if name == "strong":
                sample_ddim(models["strong"], x_T, sched, callback=callback)
            else:
                sample_w2sd(models["strong"], models["weak"], x_T, sched, inversion=self.sampler_cfg["inversion"],
                            callback=callback)
            paths[name] = torch.stack(record)
        return paths

    def plot(self, samples: dict, models: dict, alignment: dict, run_dir: Path) -> dict[str, Path]:
        from toy import plots  # matplotlib loads here, after sampling, not when the command starts

        shown = {k: samples[k] for k in ("ideal", "weak", "strong", "w2sd") if k in samples} or samples
        ideal = self.mixtures["ideal"]
        figures = {}
        if ideal.dim == 1:
            figures["densities"] = plots.densities_1d(shown, ideal, run_dir / "densities.png")
        elif ideal.dim == 2:
            figures["scatter"] = plots.scatter_2d(shown, ideal, run_dir / "scatter.png")
        if ideal.dim <= 2:
            figures["trajectories"] = plots.trajectories(self.trajectory_paths(models), run_dir / "trajectories.png")
        figures["delta_alignment"] = plots.delta_alignment(alignment, run_dir / "delta_alignment.png")
        return figures

    def run(self, run_dir: Path) -> RunResult:
        start = time.perf_counter()
        models, train_info = self.build_models(self.schedule)
        train_time = time.perf_counter() - start
        samples, nfe, wall = self.sample(models)
        metrics = self.evaluate(samples, nfe)
        alignment = self.diagnose(models)
        figures = self.plot(samples, models, alignment, run_dir) if self.cfg.figures else {}
        extra = {"delta_alignment": alignment, "training": train_info, "train_time_s": train_time,
                 "resolved_methods": self.methods, "lam": self.sampler_cfg["lam"],
                 "ideal_mode_weights": self.mixtures["ideal"].weights.tolist()}
        return RunResult(metrics=metrics, nfe=nfe, wall_time_s=wall, figures=figures, extra=extra)
