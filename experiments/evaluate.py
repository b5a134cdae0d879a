# `python run.py experiment=evaluate run_dir=...`: score a generation run, write scores.csv and paired statistics.
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from w2sd.evaluation.distribution import fid, inception_extractor, inception_score, reference_images
from w2sd.evaluation.preference import pairwise_preference
from w2sd.evaluation.run_dir import GenerationRun, Sample, load_generation_run, open_image
from w2sd.evaluation.scorer import Scorer, pick_device
from w2sd.evaluation.similarity import clip_embedder, dino_embedder
from w2sd.evaluation.video import split_strip, video_metrics
from w2sd.experiment import Experiment, RunResult
from w2sd.report import format_value, markdown_table
from w2sd.results import atomic_write_text
from w2sd.stats import bootstrap_ci, paired_difference, win_rate
from w2sd.validation import ConfigError, check_choice, check_int_range

DISTRIBUTION_METRICS = ("fid", "is")


def sample_frames(sample: Sample) -> list[Image.Image]:
    image = open_image(sample.path)
    return [image] if sample.frames == 1 else split_strip(image, sample.frames)


def method_images(samples: list[Sample]) -> Iterator[Image.Image]:
    """Every image (or video frame) of one method, loaded lazily so set-level metrics can stream them."""
    return (frame for s in samples for frame in sample_frames(s))


class EvaluateExperiment(Experiment):
    """Stages: validate (run folder, prompt set, images) → build scorers → score → aggregate → compare → write."""

    def validate(self) -> None:
        cfg = self.cfg
        if not cfg.get("run_dir"):
            raise ConfigError("run_dir=null; pass run_dir=<generation run folder holding manifest.csv>")
        check_choice("on_missing", cfg.on_missing, ("error", "skip"))
        self.scorer_names = list(cfg.scorer_names or [])
        unknown = [n for n in self.scorer_names if n not in cfg.scorers]
        if unknown:
            raise ConfigError(f"scorer_names has {unknown}, not in scorers {list(cfg.scorers)}; "
                              "add one with +scorer@scorers.NAME=<conf/scorer file>")
        if cfg.preference_scorer and cfg.preference_scorer not in self.scorer_names:
            raise ConfigError(f"preference_scorer={cfg.preference_scorer} must also be in scorer_names")
        if not 0 < cfg.bootstrap.confidence < 1:
            raise ConfigError(f"bootstrap.confidence={cfg.bootstrap.confidence} must be in (0, 1), e.g. 0.95")
        check_int_range("bootstrap.resamples", cfg.bootstrap.resamples, 100)
        check_int_range("table_images", cfg.table_images, 0)
        prompts_dir = Path(cfg.paths.prompts_dir) if cfg.get("paths") else None
        self.generation: GenerationRun = load_generation_run(
            cfg.run_dir, methods=cfg.methods, on_missing=cfg.on_missing, prompts_dir=prompts_dir,
            prompts_file=cfg.prompts_file, expected_prompt_set=cfg.expected_prompt_set)
        self.comparisons = []
        for pair in cfg.comparisons or []:
            a, b = list(pair)
            if a in self.generation.samples and b in self.generation.samples:
                self.comparisons.append((a, b))
            else:
                print(f"comparison {a} vs {b} skipped: {self.generation.root} has methods "
                      f"{sorted(self.generation.samples)}")
        if self.generation.skipped:
            print(f"skipped {len(self.generation.skipped)} prompts in every method (on_missing=skip): "
                  + "; ".join(f"{i}: {why}" for i, why in self.generation.skipped.items()))
        imaging = cfg.video.get("imaging")
        if imaging and imaging not in cfg.scorers:
            raise ConfigError(f"video.imaging={imaging} is not in scorers {list(cfg.scorers)}; "
                              "use laplacian (the default) or add one with +scorer@scorers.NAME=<conf/scorer file>")
        self.validate_distribution()

    def validate_distribution(self) -> None:
        """Set-level FID / IS need enough images per method and, for FID, a non-empty reference folder."""
        dist = self.cfg.distribution
        self.distribution_metrics = list(dist.metrics or [])
        unknown = [m for m in self.distribution_metrics if m not in DISTRIBUTION_METRICS]
        if unknown:
            raise ConfigError(f"distribution.metrics has {unknown}; choose from {list(DISTRIBUTION_METRICS)}")
        if dist.image_size is not None:
            check_int_range("distribution.image_size", dist.image_size, 1)
        check_int_range("distribution.batch_size", dist.batch_size, 1)
        check_int_range("distribution.splits", dist.splits, 1)
        self.reference: list[Path] = []
        if "fid" in self.distribution_metrics:
            if not dist.reference_dir:
                raise ConfigError("distribution.metrics has fid but distribution.reference_dir=null; pass "
                                  "distribution.reference_dir=<folder of reference images> (or drop fid)")
            self.reference = reference_images(dist.reference_dir)
            if len(self.reference) < 2:
                raise ConfigError(f"FID needs >= 2 reference images; distribution.reference_dir={dist.reference_dir} "
                                  f"holds {len(self.reference)}")
        needed = {"fid": 2, "is": dist.splits}
        for method, samples in self.generation.samples.items():
            count = sum(s.frames for s in samples)
            for metric in self.distribution_metrics:
                if count < needed[metric]:
                    raise ConfigError(f"{metric} of method {method} needs >= {needed[metric]} images, the run has "
                                      f"{count}" + ("; lower distribution.splits" if metric == "is" else ""))

    # -- stages -------------------------------------------------------------------------------------------
    def build_scorer(self, name: str) -> Scorer:
        try:
            return instantiate(self.cfg.scorers[name])
        except InstantiationException as err:  # Hydra wraps our one-line ConfigErrors; unwrap them for run.py
            if isinstance(err.__cause__, ConfigError):
                raise err.__cause__ from None
            raise

    def build_scorers(self) -> dict[str, Scorer]:
        scorers = {name: self.build_scorer(name) for name in self.scorer_names}
        pref = self.cfg.preference_scorer
        if pref and not scorers[pref].preference_logits:
            raise ConfigError(f"preference_scorer={pref} does not output preference logits; use pickscore")
        return scorers

    def build_extractors(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """What each distribution metric feeds images through: FID features and IS class logits, two separate
        outputs, from the injected `distribution.extractor` (its forward → features, its `logits` method → logits)
        or from torchmetrics' Inception (2048-d pool features / unbiased logits)."""
        dist = self.cfg.distribution
        device = pick_device(dist.device)
        if dist.extractor is not None:
            shared = instantiate(dist.extractor).to(device)
            if "is" in self.distribution_metrics and not callable(getattr(shared, "logits", None)):
                raise ConfigError(f"distribution.extractor={dist.extractor._target_} has no `logits` method; IS needs "
                                  "class logits separate from the FID features (or drop is from distribution.metrics)")
            return {m: shared if m == "fid" else shared.logits for m in self.distribution_metrics}
        outputs = {"fid": "2048", "is": "logits_unbiased"}
        return {m: inception_extractor(outputs[m], dist.inception_weights).to(device)
                for m in self.distribution_metrics}

    def distribution(self, extractors: dict[str, torch.nn.Module]) -> dict[str, dict[str, float]]:
        """Set-level FID (vs the reference folder) and IS over all images of each method (video frames count as
        images). One number per method: there is no per-prompt sample to bootstrap a CI from."""
        dist = self.cfg.distribution
        kwargs = {"batch_size": dist.batch_size, "image_size": dist.image_size, "device": pick_device(dist.device)}
        out: dict[str, dict[str, float]] = {}
        for method, samples in self.generation.samples.items():
            row: dict[str, float] = {}
            if "fid" in extractors:
                reference = (open_image(p) for p in self.reference)
                row["fid"] = fid(method_images(samples), reference, feature=extractors["fid"], **kwargs)
            if "is" in extractors:
                row["is"], row["is_std"] = inception_score(method_images(samples), extractors["is"],
                                                           splits=dist.splits, seed=dist.seed, **kwargs)
            out[method] = row
        return out

    def score(self, scorers: dict[str, Scorer]) -> dict[str, dict[str, np.ndarray]]:
        """scores[method][metric]: one value per prompt index; a video's image scores are its frame mean."""
        video_cfg = self.cfg.video
        device = next(iter(scorers.values())).device if scorers else None
        is_video = any(s.frames > 1 for rows in self.generation.samples.values() for s in rows)
        subject = dino_embedder(video_cfg.subject, device, scorer="subject") if is_video and video_cfg.subject \
            else None
        background = clip_embedder(video_cfg.background, device, scorer="background") \
            if is_video and video_cfg.background else None
        imaging = None
        if is_video and video_cfg.get("imaging"):
            imaging = scorers.get(video_cfg.imaging) or self.build_scorer(video_cfg.imaging)
        scores: dict[str, dict[str, np.ndarray]] = {}
        for method, samples in self.generation.samples.items():
            frames = [sample_frames(s) for s in samples]
            flat = [f for video in frames for f in video]
            prompts = [s.prompt for s, video in zip(samples, frames) for _ in video]
            owner = np.repeat(np.arange(len(samples)), [len(v) for v in frames])
            scores[method] = {}
            for name, scorer in scorers.items():
                per_frame = scorer.score(flat, prompts)
                scores[method][name] = np.bincount(owner, per_frame) / np.bincount(owner)
            if is_video:
                rows = [video_metrics(v, s.prompt, subject=subject, background=background, imaging=imaging)
                        if len(v) >= 3 else {} for s, v in zip(samples, frames)]
                # VBench aesthetic quality = frame-mean LAION aesthetic / 10, in %: the frames were scored above.
                if video_cfg.aesthetic in scores[method]:
                    for row, mean in zip(rows, scores[method][video_cfg.aesthetic]):
                        if row:
                            row["aesthetic_quality"] = 100.0 * mean / 10.0
                for key in rows[0]:
                    if all(key in r for r in rows):
                        scores[method][key] = np.array([r[key] for r in rows])
        return scores

    def aggregate(self, scores: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
        boot = OmegaConf.to_container(self.cfg.bootstrap)
        metrics: dict[str, dict] = {}
        for method, by_metric in scores.items():
            row: dict = {}
            for name, values in by_metric.items():
                ci = bootstrap_ci(values, **boot)
                row[name] = ci.mean
                row[f"{name}_ci"] = [ci.low, ci.high]
            row["n"] = len(self.generation.indices)
            metrics[method] = row
        return metrics

    def compare(self, scores: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
        boot = OmegaConf.to_container(self.cfg.bootstrap)
        out: dict[str, dict] = {}
        for a, b in self.comparisons:
            entry: dict = {"a": a, "b": b, "metrics": {}}
            for name in scores[a]:
                diff = paired_difference(scores[a][name], scores[b][name], **boot)
                wins = win_rate(scores[a][name], scores[b][name], tol=self.cfg.win_tie_tol)
                entry["metrics"][name] = {"difference": diff.as_dict(), **wins.as_dict()}
            pref = self.cfg.preference_scorer
            if pref:
                pct_a, pct_b = pairwise_preference(scores[a][pref], scores[b][pref])
                entry["preference"] = {"scorer": pref, a: pct_a, b: pct_b}
            out[f"{a}_vs_{b}"] = entry
        return out

    def write_scores(self, scores: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
        names = list(next(iter(scores.values())))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["method", "index", "seed", "prompt", "path", *names])
        for method, samples in self.generation.samples.items():
            for k, s in enumerate(samples):
                writer.writerow([method, s.index, s.seed, s.prompt, s.path.relative_to(self.generation.root),
                                 *(repr(float(scores[method][n][k])) for n in names)])
        return atomic_write_text(path, buffer.getvalue())

    def render(self, metrics: dict[str, dict], comparisons: dict[str, dict]) -> str:
        """Markdown: mean [95% CI] per method, then A − B differences, win/tie/loss and preference %."""
        names = [k for k in next(iter(metrics.values())) if f"{k}_ci" in next(iter(metrics.values()))]
        cells = {method: {n: f"{format_value(row[n])} [{format_value(row[n + '_ci'][0])}, "
                             f"{format_value(row[n + '_ci'][1])}]" for n in names} for method, row in metrics.items()}
        lines = [f"Scored {len(self.generation.indices)} prompts of `{self.generation.prompt_set}` from "
                 f"`{self.generation.root}`" + (f"; skipped {len(self.generation.skipped)}" if self.generation.skipped
                                                else "") + ".", "", markdown_table(cells, names)]
        for entry in comparisons.values():
            a, b = entry["a"], entry["b"]
            lines += ["", f"**{a} vs {b}** (paired by prompt)", "",
                      "| metric | mean A − B [95% CI] | win / tie / loss |", "|---|---|---|"]
            for n, m in entry["metrics"].items():
                d = m["difference"]
                lines.append(f"| {n} | {d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] | "
                             f"{m['wins']} / {m['ties']} / {m['losses']} ({100 * m['win_rate']:.0f}% wins) |")
            if "preference" in entry:
                p = entry["preference"]
                lines.append(f"| preference % ({p['scorer']} softmax) | {a} {p[a]:.2f} / {b} {p[b]:.2f} | |")
        if self.distribution_metrics:
            set_level = {method: {"FID (lower is better)": row.get("fid"), "IS (mean ± std over splits)":
                                  f"{format_value(row['is'])} ± {format_value(row['is_std'])}" if "is" in row else None}
                         for method, row in metrics.items()}
            lines += ["", "**Set-level** (all images of a method; one number each, no CI)", "",
                      markdown_table(set_level)]
        return "\n".join(lines) + "\n"

    def wandb_samples(self, scores: dict[str, dict[str, np.ndarray]]) -> tuple[list[str], list[list]]:
        """Rows (index, method, prompt, image, scores…) for the first `table_images` prompts; the image cell is a
        Path, which W&B logs as the image."""
        names = list(next(iter(scores.values())))
        rows = []
        for method, samples in self.generation.samples.items():
            for k, s in enumerate(samples[: self.cfg.table_images]):
                rows.append([s.index, method, s.prompt, s.path, *(float(scores[method][n][k]) for n in names)])
        return ["index", "method", "prompt", "image", *names], rows

    def run(self, run_dir: Path) -> RunResult:
        scorers = self.build_scorers()
        extractors = self.build_extractors()
        scores = self.score(scorers)
        metrics = self.aggregate(scores)
        for method, row in self.distribution(extractors).items():
            metrics[method].update(row)
        comparisons = self.compare(scores)
        self.write_scores(scores, run_dir / "scores.csv")
        table = self.render(metrics, comparisons)
        atomic_write_text(run_dir / "table.md", table)
        print(table)
        extra = {"comparisons": comparisons, "generation_run": str(self.generation.root),
                 "prompt_set": self.generation.prompt_set, "indices": self.generation.indices,
                 "skipped": self.generation.skipped,
                 "protocol": {"seed_equals_index": all(s.seed == s.index for rows in self.generation.samples.values()
                                                       for s in rows),
                              "shared_seeds": True, "one_image_per_prompt": True},
                 "scorers": {n: OmegaConf.to_container(self.cfg.scorers[n], resolve=True) for n in scorers}}
        if self.distribution_metrics:
            extra["distribution"] = {**OmegaConf.to_container(self.cfg.distribution, resolve=True),
                                     "n_reference": len(self.reference), "ci": "none (set-level metric)"}
        return RunResult(metrics=metrics, extra=extra, tables={"samples": self.wandb_samples(scores)})
