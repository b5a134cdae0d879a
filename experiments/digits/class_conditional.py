# Studies on the class-conditional digits net: weight gap by training length (paper App. E.1), condition gap
# by CFG scale (paper Table 4 / Z-Sampling) and that gap placed on the curve of plain CFG sampling.
from __future__ import annotations

from pathlib import Path

import torch

from experiments.digits import models as M
from experiments.digits import plots
from experiments.digits.adapter import UNetEps
from experiments.digits.classifier import DigitClassifier
from experiments.digits.data import NUM_CLASSES, all_digits
from experiments.digits.evaluator import Evaluator
from experiments.digits.experiment import DigitsExperiment
from experiments.digits.unet import TinyUNet
from toy.plots import delta_alignment as delta_plot
from w2sd.sampling import Denoiser
from w2sd.validation import ConfigError


def cycling_labels(n: int) -> torch.Tensor:
    """Sample i asks for digit i mod 10, so every class gets the same share."""
    return torch.arange(n) % NUM_CLASSES


class ClassConditionalStudy(DigitsExperiment):
    """Metrics per seed: adherence (classifier agrees with the requested digit) and fd, the Fréchet distance to all
    1,797 real digits (classes are near-balanced there as in the samples)."""

    HIGHER_IS_BETTER = {"adherence": True, "fd": False}
    CONDITIONAL = True

    def setup_evaluation(self, classifier: DigitClassifier) -> None:
        self.evaluator = Evaluator(classifier, all_digits().images)

    def measure(self, samples: torch.Tensor, n: int) -> dict[str, float]:
        pred = self.evaluator.predict(samples)
        return {"adherence": float((pred == cycling_labels(n)).double().mean()),
                "fd": self.evaluator.frechet_distance(samples)}

    def plot(self, samples: dict[str, torch.Tensor], extra: dict, run_dir: Path) -> dict[str, Path]:
        figures = {"samples": plots.image_grid(samples, run_dir / "samples.png")}
        if extra.get("delta_alignment"):
            figures["delta_alignment"] = delta_plot(extra["delta_alignment"], run_dir / "delta_alignment.png")
        return figures

    def guided(self, net: TinyUNet, n: int, guidance: float) -> UNetEps:
        return self.adapter(net, cycling_labels(n), guidance)


class WeightGapExperiment(ClassConditionalStudy):
    """Same net, same CFG, different training lengths: weak = short, strong = medium, ideal stand-in = long."""

    def plan(self) -> dict[str, M.Snapshot]:
        if not {"weak", "strong"} <= set(self.cfg.models):
            raise ConfigError(f"models={dict(self.cfg.models)} must name snapshots for weak and strong (and ideal)")
        return M.conditional_snapshots(self.cfg, self.cfg.models)

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        return {role: self.guided(net, n, self.cfg.guidance) for role, net in nets.items()}


class ConditionGapExperiment(ClassConditionalStudy):
    """One net (digits.conditional_steps[snapshot]); strong = CFG guidance.strong, weak = CFG guidance.weak."""

    def plan(self) -> dict[str, M.Snapshot]:
        return M.conditional_snapshots(self.cfg, {"net": self.cfg.snapshot})

    def model_roles(self) -> list[str]:
        return ["strong", "weak"]

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        return {role: self.guided(nets["net"], n, self.cfg.guidance[role]) for role in ("strong", "weak")}


def scale_role(scale: float) -> str:
    return f"cfg{scale:g}"


class CfgSweepExperiment(ConditionGapExperiment):
    """The condition gap on the CFG curve: plain DDIM at every `cfg_scales` entry (method and model `cfg<s>`) beside
    the configured W2SD / difference-guidance methods between CFG guidance.strong and guidance.weak. Difference
    guidance here is exactly CFG at scale s_strong + w·(s_strong − s_weak); where W2SD lands on the curve is measured
    by its metrics and by which CFG scale's samples (same x_T) lie nearest to its own."""

    def scales(self) -> list[float]:
        scales = list(self.cfg.cfg_scales)
        if not scales or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0 for s in scales):
            raise ConfigError(f"cfg_scales={scales} must be a non-empty list of CFG scales >= 0, e.g. [0, 1, 3, 6]")
        return [float(s) for s in scales]

    def model_roles(self) -> list[str]:
        return [*super().model_roles(), *map(scale_role, self.scales())]

    def generated_methods(self, methods: dict, num_steps: int) -> tuple[dict, list]:
        return {scale_role(s): {"sampler": "ddim", "model": scale_role(s)} for s in self.scales()}, []

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        return {**super().denoisers(nets, n), **{scale_role(s): self.guided(nets["net"], n, s) for s in self.scales()}}

    def study_extra(self, samples_by_seed: list[dict[str, torch.Tensor]]) -> dict:
        """Mean per-sample L2 distance (first seed) from each non-sweep method's samples to each CFG scale's."""
        samples, sweep = samples_by_seed[0], {scale_role(s): s for s in self.scales()}
        distance = {name: [[scale, float((x - samples[role]).flatten(1).norm(dim=1).mean())]
                           for role, scale in sweep.items()]
                    for name, x in samples.items() if name not in sweep}
        return {"cfg_scales": list(sweep.values()), "distance_to_cfg": distance}
