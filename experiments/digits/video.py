# Miniature video world (paper Table 12): W2SD between a short- and a long-trained clip denoiser; does it lower
# the dynamic degree as the paper reports for AnimateDiff?
from __future__ import annotations

from pathlib import Path

import torch

from experiments.digits import models as M
from experiments.digits import plots
from experiments.digits.class_conditional import cycling_labels
from experiments.digits.classifier import DigitClassifier
from experiments.digits.data import all_digits, check_clip_canvas, digits_split, moving_digit_clips
from experiments.digits.evaluator import Evaluator
from experiments.digits.experiment import DigitsExperiment
from experiments.digits.unet import TinyUNet
from experiments.digits.video_metrics import clip_metrics, frame_crops
from w2sd.sampling import Denoiser
from w2sd.validation import ConfigError, check_int_range


class VideoExperiment(DigitsExperiment):
    """(2+1)-D nets on moving-digit clips; weak = short training, strong = long training. With `conditional: true`
    the net is conditioned on the clip's digit (the role of AnimateDiff's text prompt) and clip i asks for digit
    i mod 10 at CFG scale `guidance`. `real` in extra holds the same metrics on real clips (held-out digits), the
    target values."""

    HIGHER_IS_BETTER = {"dynamic_degree": None, "class_consistency": True, "velocity_jitter": False,
                        "frame_fd": False}

    def plan(self) -> dict[str, M.Snapshot]:
        video = self.cfg.video
        check_int_range("video.frames", video.frames, 2)
        check_int_range("video.size", video.size, 8, None, "the canvas must hold one 8×8 digit")
        check_int_range("video.clips", video.clips, 1)
        check_clip_canvas(video.frames, video.size)
        check_int_range("reference.clips", self.cfg.reference.clips, 2, None, "the Fréchet distance needs a spread")
        if not isinstance(self.cfg.conditional, bool):
            raise ConfigError(f"conditional={self.cfg.conditional!r} must be true or false")
        self.CONDITIONAL = self.cfg.conditional
        if "real" in self.cfg.methods:
            raise ConfigError("a method named 'real' would hide the real clips' row in frame_fd_pooled; rename it")
        if not {"weak", "strong"} <= set(self.cfg.models):
            raise ConfigError(f"models={dict(self.cfg.models)} must name video_steps snapshots for weak and strong")
        return M.video_snapshots(self.cfg, self.cfg.models)

    def sample_shape(self) -> tuple[int, ...]:
        return (1, self.cfg.video.frames, self.cfg.video.size, self.cfg.video.size)

    def denoisers(self, nets: dict[str, TinyUNet], n: int) -> dict[str, Denoiser]:
        if not self.cfg.conditional:
            return {role: self.adapter(net) for role, net in nets.items()}
        return {role: self.adapter(net, cycling_labels(n), self.cfg.guidance) for role, net in nets.items()}

    def setup_evaluation(self, classifier: DigitClassifier) -> None:
        """frame_fd's reference: the frame crops of `reference.clips` real clips of all digits (as the image worlds'
        reference is all digits), drawn with their own seed so no reported clip is among them."""
        reference, video = self.cfg.reference, self.cfg.video
        clips = moving_digit_clips(all_digits(), reference.clips, torch.Generator().manual_seed(reference.seed),
                                   frames=video.frames, size=video.size)
        self.evaluator = Evaluator(classifier, frame_crops(clips.video))

    def measure(self, samples: torch.Tensor, n: int) -> dict[str, float]:
        return clip_metrics(samples, self.evaluator)

    def study_extra(self, samples_by_seed: list[dict[str, torch.Tensor]]) -> dict:
        """`real`: the metrics of as many real clips per seed (held-out digits), averaged over seeds — the target
        values, and for frame_fd the finite-sample floor at this many clips. `frame_fd_pooled`: frame_fd of all seeds'
        clips together (methods and real clips), where that floor is several times lower."""
        split = self.cfg.digits.split
        test = digits_split("test", split.test_fraction, split.seed)
        video = self.cfg.video
        real = [moving_digit_clips(test, self.cfg.samples_per_seed, torch.Generator().manual_seed(s),
                                   frames=video.frames, size=video.size).video for s in self.cfg.seeds]
        runs = [clip_metrics(clips, self.evaluator) for clips in real]
        pooled = {name: torch.cat([samples[name] for samples in samples_by_seed]) for name in samples_by_seed[0]}
        pooled["real"] = torch.cat(real)
        fd_pooled = {name: self.evaluator.frechet_distance(frame_crops(x)) for name, x in pooled.items()}
        return {"real": {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}, "frame_fd_pooled": fd_pooled}

    def plot(self, samples: dict[str, torch.Tensor], extra: dict, run_dir: Path) -> dict[str, Path]:
        """Three clips per method, and the first 16 of the strong net alone (to judge its frames by eye)."""
        figures = {"filmstrips": plots.filmstrips(samples, run_dir / "filmstrips.png")}
        if "strong" in samples:
            figures["strong_clips"] = plots.filmstrips({"strong": samples["strong"]}, run_dir / "strong_clips.png", 16)
        return figures
