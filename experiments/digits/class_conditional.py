# Studies on the class-conditional digits net: weight gap by training length (paper App. E.1) and condition gap
# by CFG scale (paper Table 4 / Z-Sampling).
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
        return {role: self.guided(nets["net"], n, self.cfg.guidance[role]) for role in self.model_roles()}
