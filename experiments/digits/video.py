# Miniature video world (paper Table 12): W2SD between a short- and a long-trained clip denoiser; does it lower
# the dynamic degree as the paper reports for AnimateDiff?
from __future__ import annotations

from pathlib import Path

import torch

from experiments.digits import models as M
from experiments.digits import plots
from experiments.digits.classifier import DigitClassifier
from experiments.digits.data import all_digits, digits_split, moving_digit_clips
from experiments.digits.evaluator import Evaluator
from experiments.digits.experiment import DigitsExperiment
from experiments.digits.unet import TinyUNet
from experiments.digits.video_metrics import clip_metrics
from w2sd.sampling import Denoiser
from w2sd.validation import ConfigError, check_int_range


class VideoExperiment(DigitsExperiment):
    """Unconditional (2+1)-D nets on moving-digit clips; weak = short training, strong = long training.
    `real` in extra holds the same metrics on real clips (held-out digits), the target values."""

    HIGHER_IS_BETTER = {"class_consistency": True, "velocity_jitter": False, "frame_fd": False}

    def plan(self) -> dict[str, M.Snapshot]:
        video = self.cfg.video
        check_int_range("video.frames", video.frames, 2)
        check_int_range("video.size", video.size, 8, None, "the canvas must hold one 8×8 digit")
        check_int_range("video.clips", video.clips, 1)
        if not {"weak", "strong"} <= set(self.cfg.models):
            raise ConfigError(f"models={dict(self.cfg.models)} must name video_steps snapshots for weak and strong")
        return M.video_snapshots(self.cfg, self.cfg.models)

    def sample_shape(self) -> tuple[int, ...]:
        return (1, self.cfg.video.frames, self.cfg.video.size, self.cfg.video.size)

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        return {role: self.adapter(net) for role, net in nets.items()}

    def setup_evaluation(self, classifier: DigitClassifier) -> None:
        self.evaluator = Evaluator(classifier, all_digits().images)

    def measure(self, samples: torch.Tensor, n: int) -> dict[str, float]:
        return clip_metrics(samples, self.evaluator)

    def study_extra(self, samples: dict[str, torch.Tensor]) -> dict:
        """The metrics of as many real clips per seed (held-out digits), averaged over seeds."""
        split = self.cfg.digits.split
        test = digits_split("test", split.test_fraction, split.seed)
        video = self.cfg.video
        runs = [clip_metrics(moving_digit_clips(test, self.cfg.samples_per_seed, torch.Generator().manual_seed(s),
                                                frames=video.frames, size=video.size).video, self.evaluator)
                for s in self.cfg.seeds]
        return {"real": {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}}

    def plot(self, samples: dict[str, torch.Tensor], extra: dict, run_dir: Path) -> dict[str, Path]:
        return {"filmstrips": plots.filmstrips(samples, run_dir / "filmstrips.png")}
