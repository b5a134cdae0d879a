# Which nets a digits study needs, as training specs (hashable configs), and getting them: load, or train then load.
"""A spec is the full JSON-able training config of one checkpoint: world and data selection, net shape, noise
schedule, optimiser settings, seed and step count. Its `config_hash` names the checkpoint file, so a changed config
can never silently pick up weights trained under another one."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from experiments.digits.checkpoints import checkpoint_path, load_checkpoint
from experiments.digits.classifier import PREFIX as CLASSIFIER_PREFIX
from experiments.digits.classifier import DigitClassifier, load_classifier, train_classifier
from experiments.digits.data import (
    NUM_CLASSES,
    class_counts,
    class_subset,
    digits_split,
    moving_digit_clips,
    ratio_counts,
)
from experiments.digits.training import build_unet, train_snapshots
from experiments.digits.unet import TinyUNet
from w2sd.validation import ConfigError

COMMITTED_DIR = Path(__file__).resolve().parent / "checkpoints"
SCHEDULE_KEYS = ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps")
LoggerFactory = Callable[[str], object]


def checkpoint_dir(digits_cfg: DictConfig, train: bool, cache_dir: str | Path) -> Path:
    """Where nets are read (and, with train=true, written): `digits.checkpoint_dir` if set; otherwise the committed
    folder for reading and `<cache_dir>/digits` for retraining, so train=true never rewrites shipped files."""
    if digits_cfg.get("checkpoint_dir"):
        return Path(digits_cfg.checkpoint_dir)
    return Path(cache_dir) / "digits" if train else COMMITTED_DIR


def classifier_spec(digits_cfg: DictConfig) -> dict:
    return {**OmegaConf.to_container(digits_cfg.classifier, resolve=True),
            "test_fraction": digits_cfg.split.test_fraction, "split_seed": digits_cfg.split.seed}


def image_data(digits_cfg: DictConfig, counts: Mapping[int, int]) -> dict:
    """Data selection of an image net: per-class counts taken from the start of each class's training split."""
    class_subset(training_split(digits_cfg), dict(counts))  # validates classes and counts now
    return {"world": "digits", "counts": [[int(c), int(n)] for c, n in counts.items()],
            "split": OmegaConf.to_container(digits_cfg.split, resolve=True)}


def all_classes(digits_cfg: DictConfig) -> dict[int, int]:
    return class_counts(training_split(digits_cfg))


def video_data(digits_cfg: DictConfig, video_cfg: DictConfig) -> dict:
    return {"world": "moving_digits", **OmegaConf.to_container(video_cfg, resolve=True),
            "split": OmegaConf.to_container(digits_cfg.split, resolve=True)}


def training_split(digits_cfg: DictConfig | Mapping):
    return digits_split("train", digits_cfg["split"]["test_fraction"], digits_cfg["split"]["seed"])


def training_schedule(schedule: Mapping) -> dict:
    """The part of the sampler's schedule a net is trained on: the DDPM betas (VP, ε-nets) or, for `kind: flow`,
    the rectified-flow objective over num_train_timesteps levels (the grid shift is a sampling choice, not in it)."""
    if schedule.get("kind") == "flow":
        return {"kind": "flow", "num_train_timesteps": schedule["num_train_timesteps"]}
    return {k: schedule[k] for k in SCHEDULE_KEYS}


def unet_spec(digits_cfg: DictConfig, net_cfg: DictConfig, num_classes: int, data: dict, schedule: Mapping,
              training_overrides: Mapping | None = None) -> dict:
    """The base spec shared by all snapshots of one training run (the step count is added per snapshot)."""
    return {"data": data,
            "net": {**OmegaConf.to_container(net_cfg, resolve=True), "num_classes": num_classes},
            "schedule": training_schedule(schedule),
            **OmegaConf.to_container(digits_cfg.training, resolve=True), **(training_overrides or {})}


def training_tensors(spec: dict) -> tuple[torch.Tensor, torch.Tensor]:
    data = spec["data"]
    split = training_split(data)
    if data["world"] == "digits":
        subset = class_subset(split, {int(c): int(n) for c, n in data["counts"]})
        return subset.images, subset.labels
    clips = moving_digit_clips(split, data["clips"], torch.Generator().manual_seed(data["seed"]),
                               frames=data["frames"], size=data["size"])
    return clips.video, clips.labels


def unet_prefix(spec: dict) -> str:
    return f"unet{spec['net']['dims']}d"


@dataclass(frozen=True)
class Snapshot:
    base: dict
    steps: int

    @property
    def spec(self) -> dict:
        return {**self.base, "steps": self.steps}


def make_snapshot(base: dict, steps: object, name: str) -> Snapshot:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"{name}={steps!r} training steps must be a positive integer")
    return Snapshot(base, steps)


def check_available(snapshots: Mapping[str, Snapshot], classifier: dict, directory: Path, train: bool) -> None:
    """Without train=true every checkpoint must already exist; say which is missing before any work."""
    if train:
        return
    wanted = [(role, checkpoint_path(directory, unet_prefix(s.spec), s.spec)) for role, s in snapshots.items()]
    wanted.append(("classifier", checkpoint_path(directory, CLASSIFIER_PREFIX, classifier)))
    for role, path in wanted:
        if not path.exists():
            raise ConfigError(f"no checkpoint {path.name} for the {role} net in {directory}; its training config "
                              f"changed or was never trained: add train=true to train it (≤ 15 min on CPU)")


def obtain_unets(snapshots: Mapping[str, Snapshot], directory: Path, train: bool,
                 logger_for: LoggerFactory | None = None) -> tuple[dict[str, TinyUNet], dict[str, dict]]:
    """Train (train=true, one run per distinct base spec) and load every snapshot; returns nets and their info."""
    if train:
        runs: dict[str, tuple[dict, set[int]]] = {}
        for s in snapshots.values():
            key = repr(s.base)
            runs.setdefault(key, (s.base, set()))[1].add(s.steps)
        for base, steps in runs.values():
            logger = logger_for(unet_prefix(base)) if logger_for else None
            train_snapshots(base, training_tensors(base), sorted(steps), directory, unet_prefix(base), logger)
            finish_logger(logger)
    nets, info = {}, {}
    for role, s in snapshots.items():
        net = build_unet(s.spec)
        payload = load_checkpoint(directory, unet_prefix(s.spec), s.spec, net)
        nets[role] = net.eval()
        info[role] = {"checkpoint": checkpoint_path(directory, unet_prefix(s.spec), s.spec).name, **payload["info"]}
    return nets, info


def obtain_classifier(spec: dict, directory: Path, train: bool,
                      logger_for: LoggerFactory | None = None) -> tuple[DigitClassifier, dict]:
    """The evaluator is trained only when no checkpoint of its spec exists (in `directory` or committed): retraining
    the diffusion nets keeps the same evaluator, so their FD and class numbers stay comparable."""
    for candidate in (directory, COMMITTED_DIR):
        if checkpoint_path(candidate, CLASSIFIER_PREFIX, spec).exists():
            return load_classifier(spec, candidate)
    if train:
        logger = logger_for(CLASSIFIER_PREFIX) if logger_for else None
        train_classifier(spec, directory, logger)
        finish_logger(logger)
    return load_classifier(spec, directory)


def finish_logger(logger: object) -> None:
    if logger is not None and hasattr(logger, "experiment"):
        logger.experiment.finish()


# -- the nets of each study -------------------------------------------------------------------------------------
def dataset_gap_snapshots(cfg: DictConfig) -> dict[str, Snapshot]:
    """Unconditional nets on majority:minority = ratio:1 (all training images of the majority class)."""
    study, split = cfg.study, training_split(cfg.digits)
    out = {}
    for role, ratio in study.ratios.items():
        counts = ratio_counts(split, study.majority, study.minority, ratio)
        base = unet_spec(cfg.digits, cfg.digits.image_net, 0, image_data(cfg.digits, counts), cfg.sampler.schedule)
        out[role] = make_snapshot(base, study.steps, "study.steps")
    return out


def conditional_snapshots(cfg: DictConfig, roles: Mapping[str, str]) -> dict[str, Snapshot]:
    """role → snapshot name of the class-conditional net on all ten digits (digits.conditional_steps)."""
    steps = cfg.digits.conditional_steps
    base = unet_spec(cfg.digits, cfg.digits.image_net, NUM_CLASSES, image_data(cfg.digits, all_classes(cfg.digits)),
                     cfg.sampler.schedule)
    out = {}
    for role, name in roles.items():
        if name not in steps:
            raise ConfigError(f"models.{role}={name!r} is not a snapshot; choose from {sorted(steps)}")
        out[role] = make_snapshot(base, steps[name], f"digits.conditional_steps.{name}")
    return out


def video_snapshots(cfg: DictConfig, roles: Mapping[str, str]) -> dict[str, Snapshot]:
    """role → snapshot of the clip net (video_steps); `conditional: true` conditions it on the clip's digit."""
    classes = NUM_CLASSES if cfg.conditional else 0
    base = unet_spec(cfg.digits, cfg.video_net, classes, video_data(cfg.digits, cfg.video), cfg.sampler.schedule,
                     OmegaConf.to_container(cfg.video_training, resolve=True))
    out = {}
    for role, name in roles.items():
        if name not in cfg.video_steps:
            raise ConfigError(f"models.{role}={name!r} is not a snapshot; choose from {sorted(cfg.video_steps)}")
        out[role] = make_snapshot(base, cfg.video_steps[name], f"video_steps.{name}")
    return out
