# Generation with weak, strong and W2SD over a prompt set on diffusers pipelines (Lightning Trainer.predict, DDP-safe).
"""Writes `<run_dir>/<method>/<index:05d>.png` (videos: one horizontal strip of equal-width frames) with a JSON
sidecar (NFE, wall time, frames), then `manifest.csv` (method,index,seed,prompt,path,frames). Every file is written
atomically and a finished image is never recomputed, so re-running the same command in the same run dir resumes an
interrupted run. Sample i uses seed `seed·10⁷ + i` (seed = prompt index for the default seed 0, as the released
evaluation) for every method, so weak, strong and W2SD start from the same x_T; prompts are split over processes
by Lightning's unrepeated distributed sampler and images depend only on their seed, not on the process count."""
from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from w2sd.experiment import Experiment, RunResult
from w2sd.methods import resolve_method, resolve_sampler_config, run_method, sampler_defaults
from w2sd.pipelines.adapters import ModelSetting, PipelineDenoiser
from w2sd.pipelines.encoding import encode
from w2sd.pipelines.latents import decode, initial_noise, latent_shape, to_uint8
from w2sd.pipelines.loading import check_model_spec, load_pipeline
from w2sd.pipelines.prompts import PromptItem, load_prompts
from w2sd.results import atomic_write_bytes, atomic_write_json, atomic_write_text, config_hash
from w2sd.schedule import schedule_from_diffusers
from w2sd.seeding import SEED_STRIDE
from w2sd.validation import ConfigError, check_choice

GAP_TYPES = ("weights", "lora", "cfg", "prompt", "controlnet", "ip_adapter", "moe", "weights_cfg")
MANIFEST_COLUMNS = ("method", "index", "seed", "prompt", "path", "frames")
# config keys that do not change any image (so a run may resume with other values)
PLACEMENT_KEYS = ("trainer", "batch_size", "grid_size", "cpu_threads")


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


class GenerationModule(L.LightningModule):
    """Holds only picklable configuration; pipelines are loaded on each process once it knows its device."""

    def __init__(self, plan: dict) -> None:
        super().__init__()
        self.plan = plan
        self.settings = {n: ModelSetting.from_config(n, s) for n, s in plan["settings"].items()}
        self.pipes: dict[str, Any] = {}

    def on_predict_start(self) -> None:
        # CPU kernels may round differently with another thread count; fixing it makes images independent of how
        # many processes share the machine (Lightning gives each DDP process cores // processes threads)
        self._threads = torch.get_num_threads()
        if self.plan["cpu_threads"]:
            torch.set_num_threads(int(self.plan["cpu_threads"]))
        self.pipes = {name: load_pipeline(f"gap.models.{name}", spec, self.device)
                      for name, spec in self.plan["models"].items()}

    def on_predict_end(self) -> None:
        torch.set_num_threads(self._threads)

    def predict_step(self, batch: list[PromptItem], batch_idx: int) -> None:
        run_dir = Path(self.plan["run_dir"])
        for method, resolved in self.plan["methods"].items():
            todo = [item for item in batch if not (run_dir / image_path(method, item.index)).exists()]
            if todo:
                self.generate(method, resolved, todo, run_dir)

    def _images(self, items: list[PromptItem], kind: str) -> list[Image.Image]:
        """Per-prompt images of `kind` (control_image | ip_adapter_image), else the pipeline-wide one."""
        return [Image.open(getattr(item, kind) or self.plan[kind]).convert("RGB") for item in items]

    def generate(self, method: str, resolved: Mapping, items: list[PromptItem], run_dir: Path) -> None:
        plan, settings = self.plan, self.settings
        roles = resolved["roles"]
        denoisers = {}
        for name in set(roles.values()):
            setting = settings[name]
            pipe = self.pipes[setting.model]
            prompts = [item.refined if setting.prompt == "refined" else item.prompt for item in items]
            cond = encode(pipe, setting, prompts, negative_prompt=plan["negative_prompt"], height=plan["height"],
                          width=plan["width"], num_frames=plan["num_frames"],
                          control_images=self._images(items, "control_image") if setting.control_scale else None,
                          ip_adapter_images=self._images(items, "ip_adapter_image")
                          if plan["models"][setting.model].get("ip_adapter") else None)
            denoisers[name] = PipelineDenoiser(pipe, setting, cond, name=name)
        output_setting = roles.get("final") or roles.get("strong") or roles["model"]
        pipe = self.pipes[settings[output_setting].model]
        seeds = [sample_seed(plan["seed"], item.index) for item in items]
        x, generators = initial_noise(pipe, seeds, latent_shape(pipe, plan["height"], plan["width"],
                                                               plan["num_frames"]))
        schedule = schedule_from_diffusers(dict(pipe.scheduler.config), plan["T"])
        start = time.perf_counter()
        out = run_method(resolved, denoisers, x.to(self.device), schedule, generators=generators)
        decoded = decode(pipe, out.x, output_type="np")
        wall = time.perf_counter() - start
        arrays = to_uint8(decoded.frames if hasattr(decoded, "frames") else decoded.images)
        for item, seed, array in zip(items, seeds, arrays):
            frames = array.shape[0] if array.ndim == 4 else 1
            path = run_dir / image_path(method, item.index)
            atomic_write_json(path.with_suffix(".json"), {"nfe": out.nfe, "wall_time_s": wall / len(items),
                                                          "frames": frames, "seed": seed})
            atomic_write_bytes(path, png_bytes(frame_strip(array)))


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
        for kind, key in (("controlnet", "control_scale"), ("ip_adapter", "ip_adapter_scale")):
            if gap["type"] == kind and not any(getattr(s, key) for s in settings.values()):
                raise ConfigError(f"gap.type={kind} but no setting has {key} != 0; set settings.*.{key}")
        self.items = load_prompts(prompts_cfg)
        used = {"control_image": any(s.control_scale for s in settings.values()),
                "ip_adapter_image": any(models[s.model].get("ip_adapter") for s in settings.values())}
        for kind in (k for k, needed in used.items() if needed):
            missing = [item.index for item in self.items if not getattr(item, kind) and not pipeline.get(kind)]
            if missing:
                raise ConfigError(f"prompts {missing} have an empty {prompts_cfg[f'{kind}_column']!r} column and "
                                  f"pipeline.{kind} is not set; fill the column or set pipeline.{kind}=/path.png")
        for name, spec in models.items():
            check_model_spec(f"gap.models.{name}", spec)
        self.plan = {"models": models, "settings": gap["settings"], "methods": methods, "T": T, "lam": lam,
                     "seed": int(cfg.seed), "height": int(pipeline["height"]), "width": int(pipeline["width"]),
                     "num_frames": pipeline.get("num_frames"), "negative_prompt": pipeline.get("negative_prompt"),
                     "control_image": pipeline.get("control_image"),
                     "ip_adapter_image": pipeline.get("ip_adapter_image"), "cpu_threads": pipeline.get("cpu_threads")}
        self.pipeline_cfg = pipeline

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
        """A run dir holds images of one image-determining config only; refuse to mix in another one."""
        resolved = OmegaConf.to_container(self.cfg, resolve=True)
        keyed = {k: resolved.get(k) for k in ("gap", "prompts", "sampler", "seed")}
        keyed["pipeline"] = {k: v for k, v in resolved["pipeline"].items() if k not in PLACEMENT_KEYS}
        chash, marker = config_hash(keyed), run_dir / "generation_config.json"
        if marker.exists():
            stored = json.loads(marker.read_text(encoding="utf-8"))["config_hash"]
            if stored != chash:
                raise ConfigError(f"{run_dir} holds images of another config (hash {stored}, this one {chash}); "
                                  "use a new hydra.run.dir")
        else:
            atomic_write_json(marker, {"config_hash": chash, "config": keyed})

    def predict(self, run_dir: Path) -> None:
        pending = [item for item in self.items
                   if any(not (run_dir / image_path(m, item.index)).exists() for m in self.plan["methods"])]
        if not pending:
            return
        trainer_cfg = self.pipeline_cfg["trainer"]
        trainer = L.Trainer(accelerator=trainer_cfg["accelerator"], devices=trainer_cfg["devices"],
                            strategy=trainer_cfg["strategy"], logger=False, enable_checkpointing=False,
                            enable_model_summary=False, default_root_dir=str(run_dir))
        loader = DataLoader(PromptDataset(pending), batch_size=int(self.pipeline_cfg["batch_size"]),
                            collate_fn=_as_list, num_workers=0)
        trainer.predict(GenerationModule({**self.plan, "run_dir": str(run_dir)}), loader, return_predictions=False)

    def manifest(self, run_dir: Path) -> list[dict]:
        rows = []
        for method in self.plan["methods"]:
            for item in self.items:
                rel = image_path(method, item.index)
                if (run_dir / rel).exists():
                    info = json.loads((run_dir / rel).with_suffix(".json").read_text(encoding="utf-8"))
                    rows.append({"method": method, "index": item.index, "seed": info["seed"],
                                 "prompt": item.prompt, "path": rel, "frames": info["frames"], "_info": info})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(run_dir / "manifest.csv", buffer.getvalue())
        return rows

    def summarise(self, rows: list[dict], run_dir: Path) -> RunResult:
        metrics, nfe, wall, images = {}, {}, {}, {}
        n_grid = int(self.pipeline_cfg.get("grid_size", 8))
        for method in self.plan["methods"]:
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
        methods = list(self.plan["methods"])
        table = [[item.index, sample_seed(self.plan["seed"], item.index), item.prompt,
                  *(by_index.get((m, item.index)) for m in methods)] for item in self.items[:n_grid]]
        return RunResult(metrics=metrics, nfe=nfe, wall_time_s=wall, images=images,
                         tables={"samples": (["index", "seed", "prompt", *methods], table)},
                         extra={"manifest": "manifest.csv", "num_prompts": len(self.items), "lam": self.plan["lam"],
                                "resolved_methods": self.plan["methods"]})

    def run(self, run_dir: Path) -> RunResult:
        self.check_resume(run_dir)
        self.predict(run_dir)
        return self.summarise(self.manifest(run_dir), run_dir)
