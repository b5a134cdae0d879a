# A diffusers pipeline + a model setting (LoRA, CFG, guidance, prompt, ControlNet, IP-Adapter, MoE) as ε(x, t).
"""The core samplers only see `eps(x, t) -> Tensor`. A `ModelSetting` says which configuration of a pipeline's
network that callable stands for; `Conditioning` holds the already-encoded prompt (per branch: conditional /
unconditional) so the denoiser does no text encoding inside the sampling loop. CFG runs the batch-2 pass only
when it is needed: scale 1 is the conditional branch alone and scale 0 the unconditional branch alone (the
released code always ran both, paper.md §1.4). Flow pipelines (Flux, SD3, Wan: w2sd/pipelines/flow.py) use the same
denoiser with their own transformer pass and hand back the flow velocity."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from w2sd.pipelines.moe import ROUTES, moe_layers
from w2sd.pipelines.state import Switch, loaded_adapters
from w2sd.sampling import take_rows
from w2sd.schedule import ddim_scheduler
from w2sd.validation import ConfigError, check_choice

SETTING_KEYS = ("model", "cfg", "guidance", "lora", "prompt", "control_scale", "ip_adapter_scale", "moe")
PROMPT_VARIANTS = ("raw", "refined")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # what DDIMScheduler.step converts to ε


@dataclass(frozen=True)
class ModelSetting:
    """One operator M of the paper: a network configuration and the guidance it is run with."""

    model: str = "base"                      # entry of the model table (the pipeline) this setting runs
    cfg: float = 1.0                         # CFG scale; 1 = conditional only, 0 = unconditional only
    lora: Mapping[str, float] | None = None  # adapter name → scale (negative allowed); None = LoRA off
    prompt: str = "raw"                      # which prompt variant conditions it: raw | refined
    control_scale: float = 0.0               # ControlNet conditioning scale; 0 = plain pipeline
    ip_adapter_scale: float = 0.0            # IP-Adapter image-prompt scale; 0 = plain pipeline
    moe: tuple[str, int] | None = None       # (route, k): MoE layers use the top-k or bottom-k experts
    guidance: float | None = None            # Flux guidance embedding (FLUX.1-dev); None = the pipeline's default

    @classmethod
    def from_config(cls, name: str, cfg: Mapping | ModelSetting) -> ModelSetting:
        if isinstance(cfg, ModelSetting):
            return cfg
        unknown = sorted(set(cfg) - set(SETTING_KEYS))
        if unknown:
            raise ConfigError(f"setting {name!r}: unknown key(s) {unknown}; allowed: {list(SETTING_KEYS)}")
        check_choice(f"settings.{name}.prompt", cfg.get("prompt", "raw"), PROMPT_VARIANTS)
        moe = cfg.get("moe")
        if moe is not None:
            check_choice(f"settings.{name}.moe.route", moe.get("route"), ROUTES)
            moe = (str(moe["route"]), int(moe.get("k", 2)))
        lora = cfg.get("lora")
        return cls(model=str(cfg.get("model", "base")), cfg=float(cfg.get("cfg", 1.0)),
                   lora=None if lora is None else {str(k): float(v) for k, v in lora.items()},
                   prompt=str(cfg.get("prompt", "raw")), control_scale=float(cfg.get("control_scale", 0.0)),
                   ip_adapter_scale=float(cfg.get("ip_adapter_scale", 0.0)), moe=moe,
                   guidance=None if cfg.get("guidance") is None else float(cfg["guidance"]))

    @property
    def branches(self) -> tuple[str, ...]:
        """Network passes one call needs: CFG at scale 1 or 0 is a single branch."""
        if self.cfg == 1.0:
            return ("cond",)
        if self.cfg == 0.0:
            return ("uncond",)
        return ("uncond", "cond")


@dataclass
class Conditioning:
    """Model keyword arguments per CFG branch, batch-first (e.g. encoder_hidden_states, added_cond_kwargs)."""

    cond: dict[str, Any]
    uncond: dict[str, Any]
    control_image: torch.Tensor | None = None  # preprocessed ControlNet input, one row per sample
    # IP-Adapter image embeddings (one tensor per loaded adapter) live in cond/uncond["added_cond_kwargs"]
    extra: dict[str, Any] = field(default_factory=dict)


def denoiser_network(pipe: Any) -> nn.Module:
    network = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if network is None:
        raise ConfigError(f"{type(pipe).__name__} has neither a unet nor a transformer to denoise with")
    return network


def has_ip_adapter(network: nn.Module) -> bool:
    return getattr(network.config, "encoder_hid_dim_type", None) == "ip_image_proj"


def check_setting(name: str, setting: ModelSetting, pipe: Any) -> None:
    """Raise ConfigError if the pipeline cannot run this setting (before any work is done)."""
    network = denoiser_network(pipe)
    missing = sorted(set(setting.lora or {}) - loaded_adapters(network))
    if missing:
        raise ConfigError(f"setting {name!r}: LoRA adapter(s) {missing} are not loaded on model "
                          f"{setting.model!r} (loaded: {sorted(loaded_adapters(network))}); add them under "
                          f"models.{setting.model}.loras or call pipe.load_lora_weights(..., adapter_name=...)")
    if setting.control_scale != 0 and getattr(pipe, "controlnet", None) is None:
        raise ConfigError(f"setting {name!r}: control_scale={setting.control_scale} needs a ControlNet pipeline; "
                          f"give models.{setting.model}.controlnet and a ControlNet pipeline class")
    if setting.ip_adapter_scale != 0 and not has_ip_adapter(network):
        raise ConfigError(f"setting {name!r}: ip_adapter_scale={setting.ip_adapter_scale} needs an IP-Adapter; give "
                          f"models.{setting.model}.ip_adapter or call pipe.load_ip_adapter(...)")
    if setting.moe is not None and not moe_layers(network):
        raise ConfigError(f"setting {name!r}: moe routing needs MoE layers; give models.{setting.model}.moe")
    from w2sd.pipelines.flow import check_flow_setting, flow_kind  # deferred: flow.py builds on this module

    if flow_kind(pipe) is not None:
        check_flow_setting(name, setting, pipe)
        execution_device(pipe)
        return
    if setting.guidance is not None:
        raise ConfigError(f"setting {name!r}: guidance={setting.guidance} is Flux's guidance embedding; "
                          f"{type(pipe).__name__} has none — use cfg")
    prediction = prediction_type(pipe)
    if prediction not in PREDICTION_TYPES:
        raise ConfigError(f"model {setting.model!r}: prediction_type={prediction!r} is not supported; the DDIM-based "
                          f"samplers convert {list(PREDICTION_TYPES)} outputs to ε")
    execution_device(pipe)


def prediction_type(pipe: Any) -> str:
    """epsilon | v_prediction | sample (DDPM pipelines), velocity (flow pipelines: the samplers convert it)."""
    from w2sd.pipelines.flow import flow_kind

    if flow_kind(pipe) is not None:
        return "velocity"
    return getattr(pipe.scheduler.config, "prediction_type", None) or "epsilon"


def execution_device(pipe: Any) -> torch.device:
    """Where the pipe's networks run: diffusers' `_execution_device`, which follows the hooks of
    enable_model_cpu_offload / enable_sequential_cpu_offload (the network itself then sits on CPU or meta)."""
    network = denoiser_network(pipe)
    if network.device.type == "meta" and not any(hasattr(m, "_hf_hook") for m in network.modules()):
        raise ConfigError(f"the {type(network).__name__} of {type(pipe).__name__} has its weights on the meta device "
                          "and no offload hook, so it cannot run; load its weights (no device_map / meta init) and "
                          "call pipe.to('cuda') or pipe.enable_model_cpu_offload()")
    return torch.device(getattr(pipe, "_execution_device", None) or network.device)


def _cat(values: list[Any], device: torch.device) -> Any:
    """Batch the per-branch model inputs along dim 0, on the device the network runs on."""
    if isinstance(values[0], Mapping):
        return {k: _cat([v[k] for v in values], device) for k in values[0]}
    if isinstance(values[0], (list, tuple)):  # IP-Adapter image embeds: one tensor per adapter
        return [_cat(list(per_adapter), device) for per_adapter in zip(*values)]
    return torch.cat(values, dim=0).to(device)


class PipelineDenoiser:
    """ε(x, t) of one pipeline under one ModelSetting, for one batch of encoded conditioning."""

    frames_in_batch = True  # video UNets take one text embedding per frame (batch-major), so rows do not line up

    def __init__(self, pipe: Any, setting: ModelSetting, conditioning: Conditioning, name: str = "setting",
                 switch: Switch | None = None) -> None:
        check_setting(name, setting, pipe)
        if setting.control_scale != 0 and conditioning.control_image is None:
            raise ConfigError(f"setting {name!r}: control_scale={setting.control_scale} but no control image was "
                              "given; set control_image (a path, or a `control_image` column in the prompt file)")
        self.pipe, self.setting, self.conditioning = pipe, setting, conditioning
        self.switch = switch or Switch(memo=False)  # one generation call shares one Switch across its legs
        self.network, self.device = denoiser_network(pipe), execution_device(pipe)
        # non-ε networks are converted with ā of their own training schedule at the queried timestep
        self.prediction = prediction_type(pipe)
        self.alphas_cumprod = None if self.prediction in ("epsilon", "velocity") else \
            ddim_scheduler(pipe.scheduler.config).alphas_cumprod.to(torch.float64)
        # a UNet with an IP-Adapter needs image embeds even at scale 0, where they are ignored
        if has_ip_adapter(self.network) and "image_embeds" not in conditioning.cond.get("added_cond_kwargs", {}):
            raise ConfigError(f"setting {name!r}: model {setting.model!r} has an IP-Adapter but no IP-Adapter image "
                              "was given; set ip_adapter_image (a path, or an `ip_adapter_image` column in the "
                              "prompt file)")
        self.controlnet = getattr(pipe, "controlnet", None) if setting.control_scale != 0 else None
        # the batched per-branch model inputs are fixed for this batch: build them once, not on every call
        branches = setting.branches
        self.kwargs = _cat([getattr(conditioning, b) for b in branches], self.device)
        self.control_image = None if self.controlnet is None else \
            _cat([conditioning.control_image] * len(branches), self.device)

    def __call__(self, x: torch.Tensor, t: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """ε at timestep t; `rows` (indices into this batch) when x holds only those samples (adaptive reflection)."""
        self.switch.lora(self.network, self.setting.lora)
        self.switch.ip_adapter_scale(self.pipe, self.network, self.setting.ip_adapter_scale)
        self.switch.moe(self.network, self.setting.moe)
        branches, kwargs, control_image = self.setting.branches, self.kwargs, self.control_image
        if rows is not None:
            if x.dim() == 5 and self.frames_in_batch:  # motion UNets repeat text embeddings per frame
                raise ConfigError("adaptive reflection (threshold) is not supported on video pipelines; drop threshold")
            kwargs = _cat([take_rows(getattr(self.conditioning, b), rows) for b in branches], self.device)
            if control_image is not None:
                control_image = _cat([take_rows(self.conditioning.control_image, rows)] * len(branches), self.device)
        # x stays float32 on the sampler's device; each leg runs on its own device and dtype and hands ε back there
        x_in = torch.cat([x] * len(branches)).to(self.device, self.network.dtype)
        if control_image is not None:
            kwargs = {**kwargs, "controlnet_cond": control_image}
        out = self.forward(x_in, t, kwargs).to(x.device, x.dtype)
        if out.shape[1] == 2 * x.shape[1]:  # learned-variance models (DiT) also output Σ; keep ε
            out = out[:, : x.shape[1]]
        if len(branches) > 1:
            uncond, cond = out.chunk(2)
            out = uncond + self.setting.cfg * (cond - uncond)
        return self.to_epsilon(out, x, t)

    def forward(self, x_in: torch.Tensor, t: int, kwargs: dict[str, Any]) -> torch.Tensor:
        """One network pass on the batched branches (a UNet or DiT at an integer timestep, ControlNet first)."""
        timestep = torch.full((x_in.shape[0],), t, dtype=torch.long, device=self.device)
        control_image = kwargs.get("controlnet_cond")
        if control_image is not None:
            kwargs = {k: v for k, v in kwargs.items() if k != "controlnet_cond"}
            down, mid = self.controlnet(x_in, timestep, controlnet_cond=control_image,
                                        conditioning_scale=self.setting.control_scale, return_dict=False, **kwargs)
            kwargs = {**kwargs, "down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        return self.network(x_in, timestep, return_dict=False, **kwargs)[0]

    def to_epsilon(self, out: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        """The network's prediction in the form the samplers take: ε, with DDIMScheduler.step's formulas
        (v: ε = √ā·v + √(1−ā)·x_t); a flow velocity as it is (the samplers convert it on a FlowSchedule)."""
        if self.prediction in ("epsilon", "velocity"):
            return out
        a = float(self.alphas_cumprod[t])
        if self.prediction == "v_prediction":
            return math.sqrt(a) * out + math.sqrt(1.0 - a) * x
        return (x - math.sqrt(a) * out) / math.sqrt(1.0 - a)  # "sample": the network predicts x̂₀
