# Generation with weak, strong and W2SD over a prompt set on diffusers pipelines (Lightning Trainer.predict, DDP-safe).
"""Writes `<run_dir>/<method>/<index:05d>.png` (videos: one horizontal strip of equal-width frames) with a JSON
sidecar (NFE, wall time, frames, seed, prompt and the hash of everything that made the image), then `manifest.csv`
(method,index,seed,prompt,path,frames) from the sidecars. Every file is written atomically. Resume is content-
addressed: re-running in the same run dir keeps an image only when its PNG reads and its sidecar's input hash equals
the one this run computes (prompt texts, control / IP-Adapter image contents, seed, and the run config incl. LoRA
file contents and the weights' fingerprint); anything else is regenerated, one log line per file. Sample i uses
seed `seed·10⁷ + i` (seed = prompt index for the default seed 0, as the released
evaluation) for every method, so weak, strong and W2SD start from the same x_T; prompts are split over processes
by Lightning's unrepeated distributed sampler and images depend only on their seed, not on the process count."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from huggingface_hub import try_to_load_from_cache
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from w2sd.experiment import Experiment, RunResult
from w2sd.methods import resolve_method, resolve_sampler_config, run_method, sampler_defaults
from w2sd.pipelines.adapters import ModelSetting
from w2sd.pipelines.flow import check_flow_specs, flow_kind_of_class
from w2sd.pipelines.generation import Batch, GenerationConfig, generate
from w2sd.pipelines.latents import to_uint8
from w2sd.pipelines.loading import check_model_spec, load_pipeline
from w2sd.pipelines.memory import device_memory_gb, weight_memory_lines
from w2sd.pipelines.prompts import PromptItem, load_prompts
from w2sd.results import atomic_write_bytes, atomic_write_json, atomic_write_text, config_hash
from w2sd.schedule import make_schedule
from w2sd.seeding import SEED_STRIDE
from w2sd.validation import ConfigError, check_choice

GAP_TYPES = ("weights", "lora", "cfg", "guidance", "prompt", "controlnet", "ip_adapter", "moe", "weights_cfg")
MANIFEST_COLUMNS = ("method", "index", "seed", "prompt", "path", "frames")
# config keys that do not change any image (so a run may resume with other values); the image paths are hashed by
# content per image instead
PLACEMENT_KEYS = ("trainer", "batch_size", "grid_size", "cpu_threads", "control_image", "ip_adapter_image",
                  "device_memory_gb")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
log = logging.getLogger(__name__)


def image_path(method: str, index: int) -> str:
    return f"{method}/{index:05d}.png"


def sample_seed(base_seed: int, index: int) -> int:
    return base_seed * SEED_STRIDE + index


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def frame_strip(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) video → (H, F·W, 3) strip of equal-width frames; an image (H, W, 3) passes through."""
    return np.concatenate(list(frames), axis=1) if frames.ndim == 4 else frames


class PromptDataset(Dataset):
    def __init__(self, items: list[PromptItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> PromptItem:
        return self.items[i]


def _as_list(batch: list[PromptItem]) -> list[PromptItem]:
    return batch


def calls_and_rows(resolved: Mapping, settings: Mapping[str, ModelSetting], T: int) -> tuple[int, int]:
    """(denoiser calls, network batch-rows) one image of a method costs, counted by running its sampler on zero
    outputs; a CFG pass is one call of 2 rows (scale 1 or 0: 1 row)."""
    rows = [0]

    def zero(name: str):
        def model(x, t, **_):
            rows[0] += len(settings[name].branches)
            return torch.zeros_like(x)
        return model

    denoisers = {name: zero(name) for name in resolved["roles"].values()}
    out = run_method(resolved, denoisers, torch.zeros(1, 1), make_schedule(T),
                     generators=[torch.Generator().manual_seed(0)])
    return out.nfe, rows[0]


def file_digest(path: str | Path) -> str:
    """Content hash of a file (LoRA weights, control and IP-Adapter images): cheap next to loading it."""
    digest = hashlib.blake2b(digest_size=16)
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_fingerprint(spec: Mapping, content: bool = False) -> Any:
    """Identity of the weights a model / add-on spec loads, without reading multi-GB files: a Hub id is its cached
    snapshot revision (the commit folder); a local path is (file, size, mtime) of every weight file under it, or
    the files' content hashes when `content` (LoRA files, small and often overwritten in place)."""
    if spec.get("path"):
        root = Path(spec["path"])
        if root.is_dir() and spec.get("weight_name"):
            root = root / str(spec["weight_name"])
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.suffix in WEIGHT_SUFFIXES)
        return [[f.name if f == root else str(f.relative_to(root)),
                 file_digest(f) if content else [f.stat().st_size, f.stat().st_mtime_ns]] for f in files]
    cached = try_to_load_from_cache(spec["id"], spec.get("weight_name") or "model_index.json") if spec.get("id") \
        else None
    parts = Path(cached).parts if isinstance(cached, str) else ()
    return {"id": spec.get("id"), "revision": parts[parts.index("snapshots") + 1] if "snapshots" in parts else None}


def models_fingerprint(models: Mapping) -> dict:
    """weights_fingerprint of every model of a gap and its add-ons (LoRA files by content)."""
    out = {}
    for name, spec in models.items():
        entry = {"weights": weights_fingerprint(spec)}
        for part in ("controlnet", "motion_adapter", "ip_adapter", "moe"):
            if spec.get(part):
                entry[part] = weights_fingerprint(spec[part])
        entry["loras"] = {n: weights_fingerprint(lora, content=True) for n, lora in (spec.get("loras") or {}).items()}
        out[name] = entry
    return out


def changed_keys(new: Any, old: Any, prefix: str = "", depth: int = 3) -> list[str]:
    """Dotted keys (down to `depth` levels) whose values differ, to say in one line what changed."""
    if depth == 0 or not (isinstance(new, dict) and isinstance(old, dict)):
        return [] if new == old else [prefix or "config"]
    return [k for key in sorted(set(new) | set(old), key=str)
            for k in changed_keys(new.get(key), old.get(key), f"{prefix}.{key}" if prefix else str(key), depth - 1)]


def read_sidecar(path: Path) -> dict | None:
    """An image's sidecar, or None if it is missing or unreadable (the image is then regenerated)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def png_readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class GenerationPlan:
    """All a generation process needs; picklable, so every DDP process builds its module from it."""

    models: Mapping[str, Mapping]             # model name → spec (w2sd.pipelines.loading)
    settings: Mapping[str, ModelSetting]      # setting name → ModelSetting
    methods: Mapping[str, Mapping]            # method name → resolved spec (w2sd.methods.resolve_method)
    config: GenerationConfig                  # T, size, frames, negative prompt (output np)
    seed: int                                 # base seed: sample i uses seed·10⁷ + i
    control_image: str | None = None          # pipeline-wide images when the prompt file has no column
    ip_adapter_image: str | None = None
    cpu_threads: int | None = None
    run_dir: str = ""
    run_hash: str = ""                        # hash of the run config; every image's input hash includes it
    todo: frozenset[tuple[str, int]] = frozenset()  # (method, index) pairs to (re)generate


class GenerationModule(L.LightningModule):
    """Holds only picklable configuration; pipelines are loaded on each process once it knows its device."""

    def __init__(self, plan: GenerationPlan) -> None:
        super().__init__()
        self.plan = plan
        self.pipes: dict[str, Any] = {}

    def on_predict_start(self) -> None:
        # CPU kernels may round differently with another thread count; fixing it makes images independent of how
        # many processes share the machine (Lightning gives each DDP process cores // processes threads)
        self._threads = torch.get_num_threads()
        if self.plan.cpu_threads:
            torch.set_num_threads(int(self.plan.cpu_threads))
        self.pipes = {name: load_pipeline(f"gap.models.{name}", spec, self.device)
                      for name, spec in self.plan.models.items()}

    def on_predict_end(self) -> None:
        torch.set_num_threads(self._threads)

    def predict_step(self, batch: list[PromptItem], batch_idx: int) -> None:
        for method, resolved in self.plan.methods.items():
            todo = [item for item in batch if (method, item.index) in self.plan.todo]
            if todo:
                self.generate(method, resolved, todo, Path(self.plan.run_dir))

    def _images(self, items: list[PromptItem], kind: str) -> tuple[Image.Image, ...]:
        """Per-prompt images of `kind` (control_image | ip_adapter_image), else the pipeline-wide one."""
        return tuple(Image.open(getattr(item, kind) or getattr(self.plan, kind)).convert("RGB") for item in items)

    def generate(self, method: str, resolved: Mapping, items: list[PromptItem], run_dir: Path) -> None:
        plan = self.plan
        settings = [plan.settings[name] for name in resolved["roles"].values()]
        uses = {kind: any(f(s) for s in settings) for kind, f in (
            ("refined", lambda s: s.prompt == "refined"), ("control_image", lambda s: s.control_scale),
            ("ip_adapter_image", lambda s: plan.models[s.model].get("ip_adapter")))}
        batch = Batch(prompts=tuple(item.prompt for item in items),
                      refined=tuple(item.refined for item in items) if uses["refined"] else None,
                      control_images=self._images(items, "control_image") if uses["control_image"] else None,
                      ip_adapter_images=self._images(items, "ip_adapter_image") if uses["ip_adapter_image"] else None)
        models = {name: (self.pipes[plan.settings[name].model], plan.settings[name])
                  for name in resolved["roles"].values()}
        seeds = [sample_seed(plan.seed, item.index) for item in items]
        start = time.perf_counter()
        out = generate(resolved, models, batch, plan.config, seeds=seeds)
        wall = time.perf_counter() - start
        arrays = to_uint8(out.output.frames if hasattr(out.output, "frames") else out.output.images)
        for item, seed, array in zip(items, seeds, arrays):
            frames = array.shape[0] if array.ndim == 4 else 1
            path = run_dir / image_path(method, item.index)
            atomic_write_bytes(path, png_bytes(frame_strip(array)))  # the sidecar last: it vouches for the PNG
            atomic_write_json(path.with_suffix(".json"), {
                "nfe": out.nfe, "wall_time_s": wall / len(items), "frames": frames, "seed": seed,
                "prompt": item.prompt, "inputs": inputs_hash(plan, item)})


def image_inputs(plan: GenerationPlan, item: PromptItem) -> dict:
    """Everything specific to one prompt that goes into its images: texts, image contents, seed."""
    settings = plan.settings.values()
    used = {"refined": any(s.prompt == "refined" for s in settings),
            "control_image": any(s.control_scale for s in settings),
            "ip_adapter_image": any(plan.models[s.model].get("ip_adapter") for s in settings)}
    images = {kind: file_digest(getattr(item, kind) or getattr(plan, kind)) if used[kind] else None
              for kind in ("control_image", "ip_adapter_image")}
    return {"prompt": item.prompt, "refined": item.refined if used["refined"] else None,
            "seed": sample_seed(plan.seed, item.index), **images}


def inputs_hash(plan: GenerationPlan, item: PromptItem) -> str:
    return config_hash({"run": plan.run_hash, **image_inputs(plan, item)})


class GenerationExperiment(Experiment):
    """validate → (Trainer.predict over pending prompts) → manifest, grids and sample table."""

    def validate(self) -> None:
        cfg = self.cfg
        if cfg.get("gap") is None or cfg.get("prompts") is None or cfg.get("pipeline") is None:
            raise ConfigError("generation needs gap=, prompts= and pipeline= groups; start from a preset such as "
                              "experiment=sdxl_lora_xlmoreart")
        gap = OmegaConf.to_container(cfg.gap, resolve=True)
        check_choice("gap.type", gap.get("type"), GAP_TYPES)
        sampler = resolve_sampler_config(OmegaConf.to_container(cfg.sampler, resolve=True))
        T, lam = sampler["T"], sampler["lam"]
        pipeline = OmegaConf.to_container(cfg.pipeline, resolve=True)
        models = gap.get("models") or {}
        settings = {name: ModelSetting.from_config(name, s) for name, s in (gap.get("settings") or {}).items()}
        defaults = sampler_defaults(sampler)
        methods = {name: resolve_method(name, spec, defaults, settings, T)
                   for name, spec in (gap.get("methods") or {}).items()}
        if not methods:
            raise ConfigError("gap.methods is empty; list weak, strong and w2sd (see conf/gap/lora.yaml)")
        prompts_cfg = OmegaConf.to_container(cfg.prompts, resolve=True)
        for name, setting in settings.items():
            self._check_setting(name, setting, models, pipeline, prompts_cfg)
        check_flow_specs(models, settings)
        if any(flow_kind_of_class(spec.get("pipeline")) for spec in models.values()):
            official = [m for m, r in methods.items() if r["options"].get("inversion") == "official"]
            if official:
                raise ConfigError(f"methods {official} use inversion=official, the released code's DDPM index "
                                  "arithmetic, which a flow grid does not have; use sampler.inversion=exact")
        for kind, key in (("controlnet", "control_scale"), ("ip_adapter", "ip_adapter_scale")):
            if gap["type"] == kind and not any(getattr(s, key) for s in settings.values()):
                raise ConfigError(f"gap.type={kind} but no setting has {key} != 0; set settings.*.{key}")
        try:
            self.items = load_prompts(prompts_cfg)
        except ConfigError as err:  # a dry run reports the missing prompt file with the weights
            if not cfg.get("dry_run"):
                raise
            self.items, self.prompts_missing = [], str(err)
        used = {"control_image": any(s.control_scale for s in settings.values()),
                "ip_adapter_image": any(models[s.model].get("ip_adapter") for s in settings.values())}
        for kind in (k for k, needed in used.items() if needed):
            missing = [item.index for item in self.items if not getattr(item, kind) and not pipeline.get(kind)]
            if missing:
                raise ConfigError(f"prompts {missing} have an empty {prompts_cfg[f'{kind}_column']!r} column and "
                                  f"pipeline.{kind} is not set; fill the column or set pipeline.{kind}=/path.png")
        if cfg.get("dry_run"):  # report weights, cost and memory; nothing is loaded, written or generated
            print(self.dry_run_report(models, settings, methods, sampler, pipeline))
            raise SystemExit(0)
        for name, spec in models.items():
            check_model_spec(f"gap.models.{name}", spec)
        self.plan = GenerationPlan(
            models=models, settings=settings, methods=methods, seed=int(cfg.seed),
            config=GenerationConfig(T=T, height=int(pipeline["height"]), width=int(pipeline["width"]),
                                    num_frames=pipeline.get("num_frames"), output_type="np",
                                    negative_prompt=pipeline.get("negative_prompt")),
            control_image=pipeline.get("control_image"), ip_adapter_image=pipeline.get("ip_adapter_image"),
            cpu_threads=pipeline.get("cpu_threads"))
        self.lam = lam
        self.pipeline_cfg = pipeline

    def dry_run_report(self, models: Mapping, settings: Mapping[str, ModelSetting], methods: Mapping,
                       sampler: Mapping, pipeline: Mapping) -> str:
        """Every hub weight (found / download / MISSING), the cost per method and in all, and the weight memory of
        the models the methods use, with the offload to pick when they do not fit the device together."""
        from experiments.table import model_weight_lines  # the table runner's report, one line per weight

        missing = getattr(self, "prompts_missing", None)
        T = sampler["T"]
        n = len(self.items) if not missing else int(self.cfg.prompts.get("limit") or 0)
        used = sorted({settings[role].model for r in methods.values() for role in r["roles"].values()})
        lines = [f"{self.cfg.name}: weights (found / download / MISSING; set paths with ++<key>=/path):"]
        for name in used:
            lines += model_weight_lines(f"gap.models.{name}", models[name])
        lines.append(f"  MISSING  {missing}" if missing else
                     f"  found    prompts.file: {self.cfg.prompts.file} ({len(self.items)} prompts)")
        lines.append(f"cost (T = {T}, {n} prompts; NFE = network calls per image, rows = latents through the "
                     "network, a CFG pass is 2):")
        calls, rows = 0, 0
        for method, resolved in methods.items():
            nfe, r = calls_and_rows(resolved, settings, T)
            calls, rows = calls + n * nfe, rows + n * r
            lines.append(f"  {method}: NFE {nfe}, transformer rows {r}" if any(
                flow_kind_of_class(models[settings[s].model].get("pipeline")) for s in resolved["roles"].values())
                else f"  {method}: NFE {nfe}, network rows {r}")
        lines.append(f"  total: {n * len(methods)} images, {calls:,} calls, {rows:,} rows")
        lines += weight_memory_lines(models, used, device_memory_gb(pipeline.get("device_memory_gb")))
        return "\n".join(lines)

    @staticmethod
    def _check_setting(name: str, setting: ModelSetting, models: Mapping, pipeline: Mapping, prompts: Mapping) -> None:
        if setting.model not in models:
            raise ConfigError(f"gap.settings.{name}.model={setting.model!r} is not in gap.models {sorted(models)}")
        spec = models[setting.model]
        missing = sorted(set(setting.lora or {}) - set(spec.get("loras") or {}))
        if missing:
            raise ConfigError(f"gap.settings.{name}.lora names adapter(s) {missing} that model {setting.model!r} "
                              f"does not load (its loras: {sorted(spec.get('loras') or {})}); add them under "
                              f"gap.models.{setting.model}.loras or fix the name")
        if setting.control_scale:
            if not spec.get("controlnet"):
                raise ConfigError(f"gap.settings.{name}.control_scale needs gap.models.{setting.model}.controlnet")
            GenerationExperiment._check_image(name, "control_image", "control image", pipeline, prompts)
        if setting.ip_adapter_scale and not spec.get("ip_adapter"):
            raise ConfigError(f"gap.settings.{name}.ip_adapter_scale needs gap.models.{setting.model}.ip_adapter")
        if spec.get("ip_adapter"):  # every leg on a UNet with an IP-Adapter takes the image (scale 0: ignored)
            GenerationExperiment._check_image(name, "ip_adapter_image", "IP-Adapter image", pipeline, prompts)
        if setting.moe is not None and not spec.get("moe"):
            raise ConfigError(f"gap.settings.{name}.moe needs gap.models.{setting.model}.moe (an MoE checkpoint)")
        if setting.prompt == "refined" and not prompts.get("refined_column"):
            raise ConfigError(f"gap.settings.{name}.prompt=refined needs prompts.refined_column (a CSV column of "
                              "LLM-refined prompts)")

    @staticmethod
    def _check_image(name: str, kind: str, noun: str, pipeline: Mapping, prompts: Mapping) -> None:
        """A setting that needs a `kind` image has one: pipeline-wide (an existing file) or a prompt-file column."""
        image = pipeline.get(kind)
        if not image and not prompts.get(f"{kind}_column"):
            raise ConfigError(f"gap.settings.{name} needs a {noun} but there is no {noun}; set "
                              f"pipeline.{kind}=/path/image.png or prompts.{kind}_column")
        if image and not Path(image).is_file():
            raise ConfigError(f"pipeline.{kind}={image} does not exist; give an existing image file")

    # -- stages -------------------------------------------------------------------------------------------
    def check_resume(self, run_dir: Path) -> None:
        """A run dir holds images of one run config (models and their weights, settings, methods, sampler, seed,
        pipeline); refuse to mix in another one. Per-prompt inputs are checked per image (`pending`)."""
        resolved = OmegaConf.to_container(self.cfg, resolve=True)
        keyed = {k: resolved.get(k) for k in ("gap", "sampler", "seed")}
        keyed["pipeline"] = {k: v for k, v in resolved["pipeline"].items() if k not in PLACEMENT_KEYS}
        keyed["weights"] = models_fingerprint(self.plan.models)
        chash, marker = config_hash(keyed), run_dir / "generation_config.json"
        stored = read_sidecar(marker) if marker.exists() else None
        if stored is not None and stored.get("config_hash") not in (None, chash):
            changed = changed_keys(keyed, stored.get("config"))
            raise ConfigError(f"{run_dir} holds images of another config (changed: {', '.join(changed)}); use a new "
                              "hydra.run.dir, or delete its generation_config.json to regenerate every image there")
        if stored is None or stored.get("config_hash") is None:
            if marker.exists():
                log.warning("%s is unreadable; rewriting it (every image is checked against its sidecar)", marker)
            atomic_write_json(marker, {"config_hash": chash, "config": keyed})
        self.plan = replace(self.plan, run_dir=str(run_dir), run_hash=chash)

    def pending(self, run_dir: Path) -> frozenset[tuple[str, int]]:
        """(method, index) of every image to (re)generate: missing, unreadable, or made from other inputs."""
        todo = set()
        for item in self.items:
            expected = inputs_hash(self.plan, item)
            for method in self.plan.methods:
                path = run_dir / image_path(method, item.index)
                sidecar = path.with_suffix(".json")
                info = read_sidecar(sidecar) if sidecar.exists() else None
                problem = ("missing" if not path.exists() else "unreadable" if not png_readable(path)
                           else "has no readable sidecar" if info is None
                           else "was made from other inputs" if info.get("inputs") != expected else None)
                if problem is not None:
                    todo.add((method, item.index))
                    if problem != "missing":
                        log.warning("%s %s; regenerating it", path, problem)
        return frozenset(todo)

    def predict(self, run_dir: Path) -> None:
        todo = self.pending(run_dir)
        if not todo:
            return
        pending = [item for item in self.items if any((m, item.index) in todo for m in self.plan.methods)]
        trainer_cfg = self.pipeline_cfg["trainer"]
        trainer = L.Trainer(accelerator=trainer_cfg["accelerator"], devices=trainer_cfg["devices"],
                            strategy=trainer_cfg["strategy"], logger=False, enable_checkpointing=False,
                            enable_model_summary=False, default_root_dir=str(run_dir))
        loader = DataLoader(PromptDataset(pending), batch_size=int(self.pipeline_cfg["batch_size"]),
                            collate_fn=_as_list, num_workers=0)
        trainer.predict(GenerationModule(replace(self.plan, todo=todo)), loader, return_predictions=False)

    def manifest(self, run_dir: Path) -> list[dict]:
        """One row per image whose sidecar vouches for this run's inputs; prompt and seed come from the sidecar."""
        rows = []
        for method in self.plan.methods:
            for item in self.items:
                rel = image_path(method, item.index)
                info = read_sidecar((run_dir / rel).with_suffix(".json"))
                if info is not None and info.get("inputs") == inputs_hash(self.plan, item):
                    rows.append({"method": method, "index": item.index, "seed": info["seed"],
                                 "prompt": info["prompt"], "path": rel, "frames": info["frames"], "_info": info})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(run_dir / "manifest.csv", buffer.getvalue())
        return rows

    def summarise(self, rows: list[dict], run_dir: Path) -> RunResult:
        metrics, nfe, wall, images = {}, {}, {}, {}
        n_grid = int(self.pipeline_cfg.get("grid_size", 8))
        for method in self.plan.methods:
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            nfe[method] = int(round(np.mean([r["_info"]["nfe"] for r in mine])))
            wall[method] = float(sum(r["_info"]["wall_time_s"] for r in mine))
            metrics[method] = {"images": len(mine), "nfe_per_image": nfe[method],
                               "wall_s_per_image": wall[method] / len(mine)}
            tiles = [np.asarray(Image.open(run_dir / r["path"]).convert("RGB")) for r in mine[:n_grid]]
            grid = run_dir / "grids" / f"{method}.png"
            atomic_write_bytes(grid, png_bytes(np.concatenate(tiles, axis=0 if tiles[0].shape[1] > tiles[0].shape[0]
                                                               else 1)))
            images[method] = [(grid, f"{method}: first {len(tiles)} prompts")]
        by_index = {(r["method"], r["index"]): r["path"] for r in rows}
        methods = list(self.plan.methods)
        table = [[item.index, sample_seed(self.plan.seed, item.index), item.prompt,
                  *(by_index.get((m, item.index)) for m in methods)] for item in self.items[:n_grid]]
        return RunResult(metrics=metrics, nfe=nfe, wall_time_s=wall, images=images,
                         tables={"samples": (["index", "seed", "prompt", *methods], table)},
                         extra={"manifest": "manifest.csv", "num_prompts": len(self.items), "lam": self.lam,
                                "resolved_methods": self.plan.methods})

    def run(self, run_dir: Path) -> RunResult:
        self.check_resume(run_dir)
        self.predict(run_dir)
        return self.summarise(self.manifest(run_dir), run_dir)
