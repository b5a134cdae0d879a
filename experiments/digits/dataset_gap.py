# Dataset-gap study (paper §3.3, Figs. 6–7): strong net on digits A:B = 2:1, weak on 10:1; does W2SD restore B?
from __future__ import annotations

from pathlib import Path

import torch

from experiments.digits import models as M
from experiments.digits import plots
from experiments.digits.classifier import DigitClassifier
from experiments.digits.data import all_digits, class_counts, class_subset
from experiments.digits.evaluator import Evaluator
from experiments.digits.experiment import DigitsExperiment
from experiments.digits.unet import TinyUNet
from toy.plots import delta_alignment as delta_plot
from w2sd.sampling import Denoiser
from w2sd.validation import ConfigError


class DatasetGapExperiment(DigitsExperiment):
    """Unconditional nets: `ideal` (1:1, the Δ2 stand-in), `strong` (2:1), `weak` (10:1), all A images.
    Metrics per seed: minority_fraction (classifier says B), balance_error = |minority_fraction − ½| (the balanced
    real set's share is ½, so overshooting it is no gain), other_fraction (neither A nor B) and fd, the Fréchet
    distance to the balanced real set (all dataset images of A and B, truncated to equal counts)."""

    HIGHER_IS_BETTER = {"minority_fraction": True, "balance_error": False, "fd": False}

    def plan(self) -> dict[str, M.Snapshot]:
        if set(self.cfg.study.ratios) != {"ideal", "strong", "weak"}:
            raise ConfigError(f"study.ratios names {sorted(self.cfg.study.ratios)}; it needs exactly ideal, strong "
                              f"and weak (A:B ratio of each net's training data)")
        return M.dataset_gap_snapshots(self.cfg)

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        return {role: self.adapter(net) for role, net in nets.items()}

    def setup_evaluation(self, classifier: DigitClassifier) -> None:
        study, everything = self.cfg.study, all_digits()
        n = min(class_counts(everything)[study.majority], class_counts(everything)[study.minority])
        self.reference = class_subset(everything, {study.majority: n, study.minority: n})
        self.evaluator = Evaluator(classifier, self.reference.images)

    def measure(self, samples: torch.Tensor, n: int) -> dict[str, float]:
        pred = self.evaluator.predict(samples)
        study = self.cfg.study
        minority = float((pred == study.minority).double().mean())
        return {"minority_fraction": minority, "balance_error": abs(minority - 0.5),
                "other_fraction": float(((pred != study.minority) & (pred != study.majority)).double().mean()),
                "fd": self.evaluator.frechet_distance(samples)}

    def plot(self, samples: dict[str, torch.Tensor], extra: dict, run_dir: Path) -> dict[str, Path]:
        figures = {"samples": plots.image_grid(samples, run_dir / "samples.png")}
        shown = {k: samples[k] for k in ("strong", "weak", "w2sd", "s2wd") if k in samples}
        figures["embedding"] = plots.feature_pca(shown, self.reference, self.evaluator,
                                                 (self.cfg.study.majority, self.cfg.study.minority),
                                                 run_dir / "embedding.png")
        if extra.get("delta_alignment"):
            figures["delta_alignment"] = delta_plot(extra["delta_alignment"], run_dir / "delta_alignment.png")
        return figures
