# One paper table in one command: generation presets → evaluate → table.md/.csv beside the paper's numbers + gallery.
"""`python run.py experiment=table_10` runs, for every block of paper Table 10 (a block = one generation preset,
e.g. SDXL + xlMoreArt), the generation experiment (experiments/generate.py) into `<run_dir>/<block>/gen`, then the
evaluate experiment into `<run_dir>/<block>/eval`, and writes `table.md`, `table.csv`, `gallery.png` and
`gallery.html` into `<run_dir>`. The paper's numbers, row labels and columns are those of
paper_figures/paper_tables.py (TABLES). Every stage resumes: generation never recomputes a finished image and an
evaluation is reused while its generation run's manifest is unchanged.

`dry_run=true` prints each weight the table needs (found or missing, with the override that points to it), the
number of images, the denoiser calls and, when a GPU benchmark exists, the GPU-hours; the same report opens
every real run. `devices=N` generates on N devices of one node (Lightning ddp_spawn: worker processes only
generate, scoring runs once in the main process). `shards=K shard=i` generates prompts i, i+K, i+2K, … only (a
SLURM array task each, all writing into one shared run folder); `shards=K` without `shard` is the merge: it
builds the table once every shard is complete and otherwise names the missing shards."""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import try_to_load_from_cache
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from experiments.evaluate import method_images
from experiments.gallery import Column, write_gallery
from experiments.generate import GenerationExperiment
from paper_figures.paper_tables import ALL_TABLES, our_value
from w2sd.evaluation.aesthetic import AESTHETIC_HEAD_FILE, AESTHETIC_HEAD_REPO
from w2sd.evaluation.distribution import _feed as stream_batches  # the batching FID/IS already use
from w2sd.evaluation.distribution import inception_extractor, reference_images
from w2sd.evaluation.hps import HPS_FILES, HPS_REPO
from w2sd.evaluation.image_reward import IMAGE_REWARD_REPO
from w2sd.evaluation.run_dir import load_generation_run
from w2sd.evaluation.scorer import pick_device
from w2sd.experiment import Experiment, RunResult
from w2sd.methods import resolve_method, resolve_sampler_config, run_method, sampler_defaults
from w2sd.pipelines.loading import MARKERS, resolve_source
from w2sd.pipelines.prompts import load_prompts
from w2sd.report import format_value
from w2sd.results import atomic_write_json, atomic_write_text, config_hash
from w2sd.runner import run_experiment
from w2sd.schedule import make_schedule
from w2sd.validation import ConfigError, check_int_range

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CSV_COLUMNS = ("block", "row", "method", "metric", "paper", "ours", "ci_low", "ci_high", "difference")
# Weights a scorer loads, by its class: config key → ("file", hub repo, file name) for single files with a default
# on the Hub, or ("model", marker file) for from_pretrained folders / Hub ids.
SCORER_WEIGHTS: dict[str, dict[str, tuple]] = {
    "w2sd.evaluation.hps.HPSv2Scorer": {"checkpoint": ("file", HPS_REPO, None), "base": ("model", "config.json")},
    "w2sd.evaluation.pickscore.PickScoreScorer": {"model": ("model", "config.json"),
                                                  "processor": ("model", "preprocessor_config.json")},
    "w2sd.evaluation.aesthetic.AestheticScorer": {"clip": ("model", "config.json"),
                                                  "head": ("file", AESTHETIC_HEAD_REPO, AESTHETIC_HEAD_FILE)},
    "w2sd.evaluation.image_reward.ImageRewardScorer": {
        "checkpoint": ("file", IMAGE_REWARD_REPO, "ImageReward.pt"),
        "med_config": ("file", IMAGE_REWARD_REPO, "med_config.json"), "tokenizer": ("model", "vocab.txt")},
    "w2sd.evaluation.clip_score.CLIPScoreScorer": {"model": ("model", "config.json")},
    "w2sd.evaluation.similarity.ReferenceSimilarity": {"model": ("model", "config.json")},
}


def compose_config(overrides: list[str]) -> DictConfig:
    """conf/config.yaml composed with `overrides`, as `python run.py <overrides>` would see it (without hydra)."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name="config", overrides=overrides)


def merged(cfg: DictConfig, *updates: Mapping | DictConfig | None) -> DictConfig:
    with open_dict(cfg):
        for update in updates:
            if update:
                cfg.merge_with(update)
    return cfg


@dataclass
class Block:
    """One generation preset of a table and the paper rows it yields."""

    name: str
    rows: list[tuple[str, list, str]]   # (paper label, paper values, our method)
    generation: DictConfig               # composed generation config
    evaluation: DictConfig               # composed evaluate config (run_dir filled in at scoring time)
    prompts: list                        # PromptItems of the generation config

    def gen_dir(self, run_dir: Path) -> Path:
        return run_dir / self.name / "gen"

    def eval_dir(self, run_dir: Path) -> Path:
        return run_dir / self.name / "eval"

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(method for _, _, method in self.rows))


# -- what a table needs: weights and cost ------------------------------------------------------------------------
def cached(repo: str | None, file: str) -> bool:
    """Whether Hub repo `repo` has `file` in the local HF cache (never downloads; a local path is not a repo)."""
    try:
        return bool(repo) and isinstance(try_to_load_from_cache(repo, file), str)
    except ValueError:  # not a valid repo id (e.g. a missing local path)
        return False


def source_status(key: str, spec: Mapping, marker: str | None) -> str:
    """One report line for one model weight: found (where), to be downloaded, or missing with the fix."""
    try:
        source = resolve_source(key, spec, marker)
    except ConfigError as err:
        return f"  MISSING  {err}"
    if spec.get("path") or marker is None:
        return f"  found    {key}: {source}"
    if cached(source, marker):
        return f"  found    {key}: {source} (HF cache)"
    return (f"  download {key}: {source} is not in the HF cache and will be downloaded (or set "
            f"++{key}.path=/local/folder)")


def model_weight_lines(key: str, spec: Mapping) -> list[str]:
    """Every weight a generation model spec (w2sd/pipelines/loading.py) names: pipeline, add-ons, LoRAs, MoE."""
    lines = [source_status(key, spec, MARKERS["pipeline"])]
    for part in ("controlnet", "motion_adapter"):
        if spec.get(part):
            lines.append(source_status(f"{key}.{part}", spec[part], MARKERS[part]))
    for name, lora in (spec.get("loras") or {}).items():
        lines.append(source_status(f"{key}.loras.{name}", lora, lora.get("weight_name")))
    if spec.get("ip_adapter"):
        ip = spec["ip_adapter"]
        lines.append(source_status(f"{key}.ip_adapter", ip,
                                   f"{ip.get('subfolder') or '.'}/{ip.get('weight_name')}".removeprefix("./")))
    if spec.get("moe"):
        lines.append(source_status(f"{key}.moe", spec["moe"], None))
    return lines


def weight_line(key: str, what: str, found: bool, placeholder: str = "/local/folder") -> str:
    return f"  found    {key}: {what}" if found else f"  MISSING  {key}: {what} not found; set ++{key}={placeholder}"


def model_found(value: str | None, marker: str) -> bool:
    """A from_pretrained argument: an existing local folder or a Hub id in the HF cache."""
    return bool(value) and (Path(value).expanduser().exists() or cached(value, marker))


def scorer_weight_lines(key: str, scorer: Mapping) -> list[str]:
    """Every weight one scorer config loads, checked the way its loader looks (local path, else the HF cache)."""
    lines = []
    for name, kind in SCORER_WEIGHTS.get(scorer.get("_target_", ""), {}).items():
        value = scorer.get(name)
        if kind[0] == "file":
            repo, file = kind[1], kind[2] or HPS_FILES[scorer.get("version", "v2.1")]
            found = Path(value).expanduser().is_file() if value else cached(repo, file)
            lines.append(weight_line(f"{key}.{name}", value or f"{repo} {file} (HF cache)", found, "/local/file"))
        else:
            lines.append(weight_line(f"{key}.{name}", value, model_found(value, kind[1])))
    if "references" in scorer:
        folder = scorer.get("references")
        lines.append(weight_line(f"{key}.references", f"reference images {folder}",
                                 folder not in (None, "???") and Path(str(folder)).is_dir()))
    return lines


def video_lines(key: str, video: Mapping) -> list[str]:
    """The DINO / CLIP models of the VBench-style subject and background consistency, when set."""
    return [weight_line(f"{key}.{part}", video[part], model_found(video[part], "config.json"))
            for part in ("subject", "background") if video.get(part)]


def distribution_lines(key: str, dist: Mapping, fid_stats: bool = False) -> list[str]:
    """The FID reference folder and the Inception weights set-level metrics (or FID against statistics) need."""
    metrics = list(dist.get("metrics") or [])
    if not metrics and not fid_stats:
        return []
    lines = []
    if "fid" in metrics:
        fix = f"set ++{key}.reference_dir=/imagenet/reference/folder"
        try:
            found = len(reference_images(dist["reference_dir"])) if dist.get("reference_dir") else 0
            lines.append(f"  found    {key}.reference_dir: {found} images" if found else
                         f"  MISSING  {key}.reference_dir: no FID reference images; {fix}")
        except ConfigError as err:
            lines.append(f"  MISSING  {err}; {fix}")
    if dist.get("extractor") is None:
        weights = dist.get("inception_weights")
        if weights and Path(weights).is_file():
            lines.append(f"  found    {key}.inception_weights: {weights}")
        else:
            lines.append(f"  MISSING  {key}.inception_weights={weights}: FID/IS Inception (pt_inception-2015-12-05) "
                         f"not given (torch-fidelity would download it); set ++{key}.inception_weights=/file.pth")
    return lines


def nfe_per_image(resolved: Mapping, T: int) -> int:
    """Denoiser calls one image of a method costs, counted by running its sampler on a zero ε (a CFG pair counts
    once: its two branches run as one batch)."""
    schedule = make_schedule(T)
    zero = {name: (lambda x, t, **_: torch.zeros_like(x)) for name in resolved["roles"].values()}
    out = run_method(resolved, zero, torch.zeros(1, 1), schedule, generators=[torch.Generator().manual_seed(0)])
    return out.nfe


def benchmark_seconds(folder: Path) -> dict[str, float]:
    """Seconds per denoiser call from GPU benchmark JSON files, keyed by pipeline class (any object holding a
    `pipeline` name and `seconds_per_nfe`, or `wall_s_per_image` and `nfe_per_image`: a generation run's
    results.json) or by `gap:<name>` (benchmarks/gpu_smoke.py's per-gap wall time and NFE of every method)."""
    found: dict[str, float] = {}

    def walk(node, pipeline: str | None) -> None:
        if isinstance(node, Mapping):
            pipeline = node.get("pipeline") if isinstance(node.get("pipeline"), str) else pipeline
            if pipeline and isinstance(node.get("seconds_per_nfe"), (int, float)):
                found.setdefault(pipeline, float(node["seconds_per_nfe"]))
            if pipeline and isinstance(node.get("wall_s_per_image"), (int, float)) and node.get("nfe_per_image"):
                found.setdefault(pipeline, float(node["wall_s_per_image"]) / float(node["nfe_per_image"]))
            for value in node.values():
                walk(value, pipeline)
        elif isinstance(node, list):
            for value in node:
                walk(value, pipeline)

    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("experiment") == "gpu_smoke":
            if not data["config"].get("tiny"):  # benchmarks/gpu_smoke.py: real-size nets of each gap's models
                for gap, row in data["metrics"]["gaps"].items():
                    methods = row["methods"].values()
                    found.setdefault(f"gap:{gap}", sum(m["wall_time_s"] for m in methods) /
                                     sum(m["nfe"] for m in methods))
            continue
        models = ((data.get("config") or {}).get("gap") or {}).get("models") or {} if isinstance(data, dict) else {}
        names = {m.get("pipeline") for m in models.values() if isinstance(m, Mapping)}
        walk(data, next(iter(names)) if len(names) == 1 else None)
    return found


def fid_from_statistics(images: Iterable[Image.Image], stats: str | Path, feature: torch.nn.Module, *,
                        batch_size: int = 50, image_size: int | None = None,
                        device: str | torch.device = "cpu") -> float:
    """FID of `images` against reference statistics: an .npz with `mu` and `sigma` of the same feature network
    (pytorch-fid's `--save-stats` files; ADM's ImageNet reference batches such as VIRTUAL_imagenet256_labeled.npz).
    torchmetrics' FID is used with its reference sums set so that they give exactly this mean and covariance."""
    path = Path(stats)
    if not path.is_file():
        raise ConfigError(f"fid_stats={stats} does not exist; give an .npz with mu and sigma (e.g. ADM's "
                          "VIRTUAL_imagenet256_labeled.npz) or use evaluate.distribution.reference_dir")
    with np.load(path) as data:
        if "mu" not in data or "sigma" not in data:
            raise ConfigError(f"fid_stats={stats} has arrays {list(data)}; it needs mu and sigma")
        mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
    metric = FrechetInceptionDistance(feature=feature).to(device)
    if metric.real_features_sum.shape[0] != mu.shape[0]:
        raise ConfigError(f"fid_stats={stats} holds {mu.shape[0]}-d statistics but the extractor gives "
                          f"{metric.real_features_sum.shape[0]}-d features; use statistics of the same network")
    n = 2  # any count ≥ 2 restores the covariance exactly: cov = (Σxxᵀ − n·μμᵀ)/(n − 1)
    real = metric.real_features_sum
    metric.real_features_sum = torch.from_numpy(mu * n).to(real)
    metric.real_features_cov_sum = torch.from_numpy(sigma * (n - 1) + n * np.outer(mu, mu)).to(real)
    metric.real_features_num_samples = torch.tensor(n, device=real.device)
    count = stream_batches(images, batch_size, image_size, lambda b: metric.update(b, real=False), device)
    if count < 2:
        raise ConfigError(f"FID needs >= 2 generated images, got {count}")
    return float(metric.compute())


def block_keys(message: str, block: str) -> str:
    """A generation error as the table's user types its keys: a block's generation config is the preset with
    `blocks.<block>.set` on top, so `gap.models.base.path` there is `blocks.<block>.set.gap.models.base.path`."""
    return re.sub(r"(?<![\w.])(?=(gap|prompts|pipeline|sampler)\.)", f"blocks.{block}.set.", message)


# -- the experiment ---------------------------------------------------------------------------------------------
class TableExperiment(Experiment):
    """validate (blocks, weights, cost report) → generate every block → score every block → table + gallery."""

    def validate(self) -> None:
        cfg = self.cfg
        self.table = str(cfg.paper_table)
        if self.table not in ALL_TABLES:
            raise ConfigError(f"paper_table={self.table!r} is not a paper table here; choose from "
                              f"{sorted(ALL_TABLES, key=lambda t: (not t.isdigit(), t.zfill(3)))}")
        self.caption, self.columns, paper_blocks = ALL_TABLES[self.table]
        check_int_range("devices", cfg.devices, 1)
        self.shards = check_int_range("shards", cfg.shards, 1)
        self.shard = None if cfg.shard is None else check_int_range("shard", cfg.shard, 0, self.shards - 1,
                                                                     f"with shards={self.shards}")
        if cfg.num_prompts is not None:
            check_int_range("num_prompts", cfg.num_prompts, 1)
        check_int_range("gallery.rows", cfg.gallery.rows, 1)
        self.blocks = [self.build_block(name, rows) for name, rows in paper_blocks]
        print(self.report())
        if cfg.dry_run:  # a dry run ends here: nothing is written, generated or logged
            raise SystemExit(0)
        for block in self.blocks:
            try:
                GenerationExperiment(block.generation).validate()
            except ConfigError as err:
                raise ConfigError(block_keys(str(err), block.name)) from err

    def build_block(self, name: str, rows: list) -> Block:
        spec = (self.cfg.get("blocks") or {}).get(name)
        if spec is None or not spec.get("preset"):
            raise ConfigError(f"blocks.{name}.preset is not set; table {self.table} needs a generation preset for "
                              f"block {name} (see conf/experiment/table_{self.table}.yaml)")
        rename = dict(spec.get("methods") or {})
        rows = [(label, values, rename.get(method, method)) for label, values, method in rows]
        gen = compose_config([f"experiment={spec.preset}", "logger=none", *(spec.get("overrides") or [])])
        # the table command's own paths (prompts_dir, cache_dir, …) hold for every block it composes
        paths = {"paths": OmegaConf.to_container(self.cfg.paths, resolve=True)}
        gen = merged(gen, paths, self.cfg.get("generate"), spec.get("set"))
        wanted = list(dict.fromkeys(method for _, _, method in rows))
        missing = [m for m in wanted if m not in gen.gap.methods]
        if missing:
            raise ConfigError(f"block {name}: methods {missing} are not in preset {spec.preset}'s gap.methods "
                              f"{list(gen.gap.methods)}; define them under blocks.{name}.set.gap.methods")
        with open_dict(gen):  # generate only what the table shows
            gen.gap.methods = {m: gen.gap.methods[m] for m in wanted}
            if self.cfg.num_prompts is not None:
                gen.prompts.limit = int(self.cfg.num_prompts)
            if self.cfg.devices > 1:
                gen.pipeline.trainer.devices = int(self.cfg.devices)
                gen.pipeline.trainer.strategy = "ddp_spawn"
        evaluation = compose_config(["experiment=evaluate", "logger=none", "skip_if_done=true"])
        evaluation = merged(evaluation, paths, self.cfg.get("evaluate"), spec.get("evaluate"))
        baseline = rename.get("strong", "strong")
        with open_dict(evaluation):
            evaluation.methods = wanted
            if self.cfg.fid_stats:  # FID against the .npz statistics instead of a reference folder
                evaluation.distribution.metrics = [m for m in evaluation.distribution.metrics if m != "fid"]
            # each W2SD-like row against the strong row: the paper's MPS pairs and Table 6's win rates
            evaluation.comparisons = [[m, baseline] for m in wanted
                                      if m not in (baseline, rename.get("weak", "weak"))] or None
        prompts = load_prompts(OmegaConf.to_container(gen.prompts, resolve=True)) \
            if Path(str(gen.prompts.file)).is_file() else []
        return Block(name, rows, gen, evaluation, prompts)

    # -- report ---------------------------------------------------------------------------------------------
    def report(self) -> str:
        lines = [f"table {self.table} — {self.caption}", "weights (found / download / MISSING; paths are set with "
                 "++<key>=/path on this command):"]
        for block in self.blocks:
            gen = OmegaConf.to_container(block.generation, resolve=True)
            prefix = f"blocks.{block.name}.set"
            for model, spec in gen["gap"]["models"].items():
                lines += model_weight_lines(f"{prefix}.gap.models.{model}", spec)
            file = Path(gen["prompts"]["file"])
            lines.append(f"  found    {prefix}.prompts.file: {file} ({len(block.prompts)} prompts)" if block.prompts
                         else f"  MISSING  {prefix}.prompts.file: {file} does not exist; set ++{prefix}.prompts.file="
                              "/prompts.csv or paths.prompts_dir")
        scored = OmegaConf.to_container(self.blocks[0].evaluation, resolve=True)
        for name in scored["scorer_names"]:
            lines += scorer_weight_lines(f"evaluate.scorers.{name}", scored["scorers"][name])
        lines += video_lines("evaluate.video", scored["video"])
        lines += distribution_lines("evaluate.distribution", scored["distribution"], bool(self.cfg.fid_stats))
        if self.cfg.fid_stats:
            lines.append(weight_line("fid_stats", f"FID reference statistics {self.cfg.fid_stats}",
                                     Path(self.cfg.fid_stats).is_file()))
        lines += self.cost_lines()
        return "\n".join(lines)

    def cost_lines(self) -> list[str]:
        seconds = benchmark_seconds(Path(str(self.cfg.benchmarks)))
        lines, total_images, total_calls, hours, unknown = ["cost:"], 0, 0, 0.0, set()
        missing_prompts = [block.name for block in self.blocks if not block.prompts]
        for block in self.blocks:
            gen = OmegaConf.to_container(block.generation, resolve=True)
            sampler = resolve_sampler_config(gen["sampler"])
            settings = gen["gap"]["settings"]
            n = len(block.prompts)
            calls = {m: nfe_per_image(resolve_method(m, spec, sampler_defaults(sampler), settings, sampler["T"]),
                                      sampler["T"]) for m, spec in gen["gap"]["methods"].items()}
            pipelines = {spec["pipeline"] for spec in gen["gap"]["models"].values()}
            block_calls = n * sum(calls.values())
            total_images += n * len(calls)
            total_calls += block_calls
            # the gpu_smoke gap of this gap type (video: its AnimateDiff run) stands in for pipelines without their own
            smoke = seconds.get("gap:video" if gen["pipeline"].get("num_frames") else f"gap:{gen['gap']['type']}",
                                seconds.get(f"gap:{gen['gap']['type']}_released"))
            per_call = [seconds.get(p, smoke) for p in pipelines]
            if None not in per_call:
                hours += block_calls * max(per_call) / 3600
            else:
                unknown |= {p for p, c in zip(pipelines, per_call) if c is None}
            per_image = ", ".join(f"{m} {c}" for m, c in calls.items())
            if not block.prompts:  # the number of prompts is in the file: zero would be a wrong count
                lines.append(f"  {block.name}: {len(calls)} methods × unknown prompts (prompts file missing); "
                             f"denoiser calls per image {per_image} → unknown")
                continue
            lines.append(f"  {block.name}: {len(calls)} methods × {n} prompts; denoiser calls per image {per_image}"
                         f" → {block_calls:,} calls")
        if missing_prompts:
            known = (f"; the other blocks: {total_images:,} images, {total_calls:,} denoiser calls"
                     if len(missing_prompts) < len(self.blocks) else "")
            lines.append(f"  total: unknown (prompts file missing for {', '.join(missing_prompts)}){known}")
        else:
            lines.append(f"  total: {total_images:,} images, {total_calls:,} denoiser calls (T = sampler.T; a CFG "
                         "pair is one batched call)")
        if missing_prompts and not unknown:
            lines.append("  GPU-hours: unknown (prompts file missing)")
        elif unknown:
            lines.append(f"  GPU-hours: unknown — no GPU benchmark for {', '.join(sorted(unknown))} in "
                         f"{self.cfg.benchmarks}/*.json (run the GPU smoke test on this machine first)")
        else:
            lines.append(f"  GPU-hours: ≈ {hours:.2f} on one device (from {self.cfg.benchmarks}/*.json), "
                         f"≈ {hours / self.cfg.devices:.2f} h wall with devices={self.cfg.devices}")
        return lines

    # -- stages ---------------------------------------------------------------------------------------------
    def shard_marker(self, run_dir: Path, shard: int) -> Path:
        return run_dir / "shards" / f"of_{self.shards}" / f"shard_{shard}.json"

    def generate_shard(self, run_dir: Path) -> None:
        """Prompts shard, shard + shards, … of every block; a marker file records the shard as complete."""
        for block in self.blocks:
            experiment = GenerationExperiment(block.generation)
            experiment.validate()
            experiment.items = experiment.items[self.shard::self.shards]
            experiment.run(block.gen_dir(run_dir))
        atomic_write_json(self.shard_marker(run_dir, self.shard),
                          {"shard": self.shard, "shards": self.shards, "blocks": [b.name for b in self.blocks]})

    def check_shards(self, run_dir: Path) -> None:
        missing = [i for i in range(self.shards) if not self.shard_marker(run_dir, i).is_file()]
        if missing:
            raise ConfigError(f"cannot merge: shard(s) {', '.join(map(str, missing))} of {self.shards} not complete "
                              f"in {run_dir}; run them with shards={self.shards} shard=<i> (same command)")

    def generate(self, run_dir: Path) -> None:
        for block in self.blocks:
            run_experiment(block.generation, block.gen_dir(run_dir))

    def score(self, run_dir: Path) -> dict[str, dict]:
        """Evaluate every block; a block whose generation manifest is unchanged reuses its stored scores."""
        results = {}
        for block in self.blocks:
            manifest = (block.gen_dir(run_dir) / "manifest.csv").read_bytes()
            with open_dict(block.evaluation):
                block.evaluation.run_dir = str(block.gen_dir(run_dir))
                block.evaluation.generation_manifest = config_hash(manifest.decode("utf-8"))
            results[block.name] = run_experiment(block.evaluation, block.eval_dir(run_dir))
            if self.cfg.fid_stats:
                for method, value in self.fid_against_stats(block, run_dir).items():
                    results[block.name]["metrics"][method]["fid"] = value
        return results

    def fid_against_stats(self, block: Block, run_dir: Path) -> dict[str, float]:
        """FID per method against `fid_stats` (.npz), stored beside the evaluation and reused while the
        generation manifest and the statistics file are unchanged."""
        dist = block.evaluation.distribution
        key = config_hash({"manifest": block.evaluation.generation_manifest, "stats": str(self.cfg.fid_stats),
                           "stats_size": Path(self.cfg.fid_stats).stat().st_size if Path(self.cfg.fid_stats).is_file()
                           else None, "extractor": OmegaConf.to_container(dist, resolve=True)})
        stored = block.eval_dir(run_dir) / "fid_stats.json"
        if stored.is_file() and json.loads(stored.read_text())["key"] == key:
            return json.loads(stored.read_text())["fid"]
        feature = instantiate(dist.extractor) if dist.extractor is not None else \
            inception_extractor("2048", dist.inception_weights)
        device = pick_device(dist.device)
        generation = load_generation_run(block.gen_dir(run_dir))
        fid = {m: fid_from_statistics(method_images(samples), self.cfg.fid_stats, feature.to(device),
                                      batch_size=dist.batch_size, image_size=dist.image_size, device=device)
               for m, samples in generation.samples.items() if m in block.methods}
        atomic_write_json(stored, {"key": key, "stats": str(self.cfg.fid_stats), "fid": fid})
        return fid

    def cells(self, results: dict[str, dict]) -> Iterator[dict]:
        """One record per (row, metric): paper value, ours, its CI and ours − paper."""
        for block in self.blocks:
            stored = results[block.name]
            for label, paper, method in block.rows:
                for (column, metric), value in zip(self.columns, paper):
                    ours = our_value(stored, method, metric)
                    ci = stored["metrics"].get(method, {}).get(f"{metric}_ci") or [None, None]
                    yield {"block": block.name, "row": label, "method": method, "metric": column, "paper": value,
                           "ours": ours, "ci_low": ci[0], "ci_high": ci[1],
                           "difference": None if ours is None or value is None else ours - value}

    def render(self, cells: list[dict], results: dict[str, dict]) -> str:
        header = ["Method"] + [f"{c} {side}" for c, _ in self.columns for side in ("paper", "ours [95% CI]", "Δ")]
        lines = [f"**Table {self.table}** — {self.caption}", "",
                 "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        per_row: dict[tuple[str, str], list[dict]] = {}
        for cell in cells:
            per_row.setdefault((cell["block"], cell["row"]), []).append(cell)
        for (block, label), row in per_row.items():
            out = []
            for c in row:
                ours = format_value(c["ours"])
                if c["ci_low"] is not None:
                    ours += f" [{format_value(c['ci_low'])}, {format_value(c['ci_high'])}]"
                diff = "–" if c["difference"] is None else f"{c['difference']:+.4f}"
                out += [format_value(c["paper"]), ours, diff]
            lines.append(f"| {label} ({block}) | " + " | ".join(out) + " |")
        counts = ", ".join(f"{b.name}: {results[b.name]['metrics'][b.methods[0]]['n']} prompts" for b in self.blocks)
        lines += ["", f"Ours: {counts}; mean [95% bootstrap CI over prompts]; Δ = ours − paper. Paper numbers: "
                  "paper_figures/paper_tables.py. MPS: our PickScore two-way softmax % (the MPS checkpoint is not "
                  "public). Set-level FID / IS have no CI."]
        return "\n".join(lines) + "\n"

    def write_csv(self, cells: list[dict], path: Path) -> Path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in c.items()} for c in cells)
        return atomic_write_text(path, buffer.getvalue())

    def gallery(self, run_dir: Path) -> tuple[Path, Path]:
        columns = [Column(f"{label} ({block.name})", method, block.gen_dir(run_dir), block.eval_dir(run_dir) /
                          "scores.csv") for block in self.blocks for label, _, method in block.rows]
        return write_gallery(columns, run_dir, title=f"Table {self.table} — {self.caption}",
                             rows=int(self.cfg.gallery.rows), height=int(self.cfg.gallery.height))

    def run(self, run_dir: Path) -> RunResult:
        if self.shard is not None:
            self.generate_shard(run_dir)
            return RunResult(metrics={}, extra={"shard": self.shard, "shards": self.shards})
        if self.shards > 1:
            self.check_shards(run_dir)
        self.generate(run_dir)
        results = self.score(run_dir)
        cells = list(self.cells(results))
        table = self.render(cells, results)
        atomic_write_text(run_dir / "table.md", table)
        self.write_csv(cells, run_dir / "table.csv")
        png, page = self.gallery(run_dir)
        print(table)
        print(f"gallery: {png}  {page}")
        metrics = {}
        for c in cells:
            row = metrics.setdefault(f"{c['row']} ({c['block']})", {})
            row[c["metric"]], row[f"{c['metric']} paper"] = c["ours"], c["paper"]
        return RunResult(metrics=metrics, figures={"gallery": png}, images={"gallery": [(png, table.splitlines()[0])]},
                         tables={"table": (list(CSV_COLUMNS), [[c[k] for k in CSV_COLUMNS] for c in cells])},
                         extra={"table": self.table, "table_md": "table.md", "table_csv": "table.csv",
                                "gallery_html": "gallery.html",
                                "runs": {b.name: {"generation": str(b.gen_dir(run_dir)),
                                                  "evaluation": str(b.eval_dir(run_dir))} for b in self.blocks}})
