# Loading diffusers pipelines (and LoRA, ControlNet, IP-Adapter, motion-adapter add-ons) from a path or the HF cache.
"""A model spec is a mapping such as
`{pipeline: StableDiffusionXLPipeline, id: stabilityai/stable-diffusion-xl-base-1.0, path: null, dtype: float16,
  loras: {art: {id: ..., weight_name: ..., path: null}}, controlnet: {id: ..., path: null}, motion_adapter: ...,
  ip_adapter: {id: h94/IP-Adapter, subfolder: models, weight_name: ip-adapter_sd15.safetensors, path: null},
  offload: none | model | sequential}`
(an IP-Adapter `path` is a folder laid out as the Hub repo: <path>/<subfolder>/<weight_name> and .../image_encoder).
`path` wins over `id`; an `id` is read from the Hugging Face cache. With HF_HUB_OFFLINE=1 nothing is downloaded and
a missing model is reported at validation time in one line (no hub retries); without it diffusers may download."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diffusers
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache

from w2sd.pipelines.moe import install_moe
from w2sd.validation import ConfigError

SPEC_KEYS = {"pipeline", "id", "path", "dtype", "variant", "loras", "controlnet", "motion_adapter", "ip_adapter",
             "moe", "offload"}
OFFLOADS = ("none", "model", "sequential")  # diffusers' enable_model_cpu_offload / enable_sequential_cpu_offload
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# file whose presence in a folder / the cache says "this model is here"
MARKERS = {"pipeline": "model_index.json", "controlnet": "config.json", "motion_adapter": "config.json"}


def offline() -> bool:
    return bool(hf_constants.is_offline_mode())


def _where(key: str, model_id: str | None) -> str:
    how = f"`hf download {model_id}` where the Hub is reachable (cache: {hf_constants.HF_HUB_CACHE}), or " \
        if model_id else ""
    return f"provide it with {how}`++{key}.path=/local/folder`"


def resolve_source(key: str, spec: Mapping, marker: str | None) -> str:
    """A local folder/file or a Hub id that is known to be loadable; raises ConfigError naming id, place and fix."""
    model_id, path = spec.get("id"), spec.get("path")
    if path:
        if not Path(path).exists():
            raise ConfigError(f"{key}: path {path} does not exist (model {model_id!r}); {_where(key, model_id)}")
        return str(path)
    if not model_id:
        raise ConfigError(f"{key}: neither id nor path is set; set ++{key}.id=<hub id> or ++{key}.path=/local/folder")
    if offline() and marker is not None and not isinstance(try_to_load_from_cache(model_id, marker), str):
        raise ConfigError(f"{key}: model {model_id!r} is not in the HF cache ({hf_constants.HF_HUB_CACHE}) and "
                          f"HF_HUB_OFFLINE=1 forbids downloading; {_where(key, model_id)}")
    return str(model_id)


def _lora_source(key: str, spec: Mapping) -> tuple[str, str | None]:
    """(folder or id, weight file name) for load_lora_weights; a path may point at the .safetensors file itself."""
    weight_name = spec.get("weight_name")
    source = resolve_source(key, spec, weight_name)
    if spec.get("path") and Path(source).is_file():
        return str(Path(source).parent), Path(source).name
    return source, weight_name


def _ip_adapter_source(key: str, spec: Mapping) -> str:
    if not spec.get("weight_name"):
        raise ConfigError(f"{key}.weight_name is not set; e.g. {key}.weight_name=ip-adapter_sd15.safetensors")
    return resolve_source(key, spec, f"{spec.get('subfolder') or '.'}/{spec['weight_name']}".removeprefix("./"))


def spec_config(spec: Mapping, file: str) -> dict | None:
    """A component config of a model spec read before any weight loads (e.g. "transformer/config.json"): from the
    local `path`, else from the HF cache snapshot of the `id`; None when it is not on this machine."""
    if spec.get("path"):
        candidate = Path(spec["path"]) / file
        found = str(candidate) if candidate.is_file() else None
    elif spec.get("id"):
        try:
            found = try_to_load_from_cache(spec["id"], file)
        except ValueError:  # not a valid repo id
            found = None
    else:
        found = None
    if not isinstance(found, str):
        return None
    try:
        return json.loads(Path(found).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pipeline_class(key: str, name: str) -> type:
    cls = getattr(diffusers, str(name), None)
    if not isinstance(cls, type) or not issubclass(cls, diffusers.DiffusionPipeline):
        raise ConfigError(f"{key}.pipeline={name!r} is not a diffusers pipeline class; "
                          "use e.g. StableDiffusionXLPipeline, AnimateDiffSDXLPipeline, FluxPipeline, "
                          "StableDiffusion3Pipeline, WanPipeline")
    return cls


def check_model_spec(key: str, spec: Mapping) -> None:
    """Everything about a spec that can be checked without loading weights (run in Experiment.validate)."""
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {unknown}; allowed: {sorted(SPEC_KEYS)}")
    pipeline_class(key, spec.get("pipeline"))
    if spec.get("dtype", "float32") not in DTYPES:
        raise ConfigError(f"{key}.dtype={spec.get('dtype')!r} is not one of {sorted(DTYPES)}")
    if spec.get("offload", "none") not in OFFLOADS:
        raise ConfigError(f"{key}.offload={spec.get('offload')!r} is not one of {list(OFFLOADS)} (CPU offload onto "
                          "the run's device, as pipe.enable_model_cpu_offload())")
    resolve_source(key, spec, MARKERS["pipeline"])
    for part in ("controlnet", "motion_adapter"):
        if spec.get(part):
            resolve_source(f"{key}.{part}", spec[part], MARKERS[part])
    for name, lora in (spec.get("loras") or {}).items():
        _lora_source(f"{key}.loras.{name}", lora)
    if spec.get("ip_adapter"):
        _ip_adapter_source(f"{key}.ip_adapter", spec["ip_adapter"])
    if spec.get("moe"):
        resolve_source(f"{key}.moe", spec["moe"], None)


def load_pipeline(key: str, spec: Mapping, device: str | torch.device = "cpu") -> Any:
    """Load the pipeline a spec describes, with its LoRA adapters (named as in `loras`) and add-ons."""
    check_model_spec(key, spec)
    dtype = DTYPES[spec.get("dtype", "float32")]
    common = {"torch_dtype": dtype, "local_files_only": offline()}
    extra: dict[str, Any] = {}
    if spec.get("controlnet"):
        source = resolve_source(f"{key}.controlnet", spec["controlnet"], MARKERS["controlnet"])
        extra["controlnet"] = diffusers.ControlNetModel.from_pretrained(source, **common)
    if spec.get("motion_adapter"):
        source = resolve_source(f"{key}.motion_adapter", spec["motion_adapter"], MARKERS["motion_adapter"])
        extra["motion_adapter"] = diffusers.MotionAdapter.from_pretrained(source, **common)
    cls = pipeline_class(key, spec["pipeline"])
    source = resolve_source(key, spec, MARKERS["pipeline"])
    variant = {"variant": spec["variant"]} if spec.get("variant") else {}
    pipe = cls.from_pretrained(source, **common, **variant, **extra)
    for name, lora in (spec.get("loras") or {}).items():
        lora_source, weight_name = _lora_source(f"{key}.loras.{name}", lora)
        pipe.load_lora_weights(lora_source, weight_name=weight_name, adapter_name=name,
                               local_files_only=offline())
    if spec.get("ip_adapter"):
        ip = spec["ip_adapter"]
        pipe.load_ip_adapter(_ip_adapter_source(f"{key}.ip_adapter", ip), subfolder=ip.get("subfolder") or "",
                             weight_name=ip["weight_name"], local_files_only=offline())
    if spec.get("moe"):
        moe = spec["moe"]
        install_moe(pipe.transformer, num_experts=moe["num_experts"], state_path=resolve_source(f"{key}.moe", moe,
                                                                                                None))
    pipe.set_progress_bar_config(disable=True)
    offload = spec.get("offload", "none")
    if offload == "none":
        return pipe.to(device)
    # weights stay on the CPU and move to `device` per network call; samplers follow pipe._execution_device
    getattr(pipe, f"enable_{offload}_cpu_offload")(device=device)
    return pipe
