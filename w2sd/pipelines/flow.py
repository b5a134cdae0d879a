# Rectified-flow pipelines (Flux, SD3/SD3.5, Wan2.1): conditioning, the velocity callable, x_T layout, σ grid, decode.
"""What differs between a diffusers flow pipeline and the DDPM ones lives here, each piece taken from what the
pipeline's own `__call__` does: Flux packs 2×2 latent patches into tokens (`_pack_latents`) and takes latent image
ids, text ids, pooled projections and (FLUX.1-dev) a guidance embedding; SD3 takes pooled projections and runs
true CFG as one batch-2 pass; Wan takes video latents (C, F, h, w) and samples with FlowMatchEuler at its
`flow_shift` in place of the UniPC scheduler it ships (as the SDXL path swaps any scheduler for DDIM). The
samplers get the transformer's raw output after the CFG combination — the flow velocity v — at t = σ·1000 and
convert it themselves (w2sd.ddim.split_prediction)."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from w2sd.pipelines.adapters import (
    Conditioning,
    ModelSetting,
    PipelineDenoiser,
    denoiser_network,
    execution_device,
)
from w2sd.pipelines.latents import _image_output, _output_class, decode
from w2sd.pipelines.state import Switch
from w2sd.validation import ConfigError

FLOW_KINDS = ("flux", "sd3", "wan")
# pipeline class → kind; subclasses (e.g. img2img variants) are not text-to-image pipelines W2SD samples with
FLOW_PIPELINES = {"FluxPipeline": "flux", "StableDiffusion3Pipeline": "sd3", "WanPipeline": "wan"}
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
# what a FlowMatchEuler config may carry that the W2SD flow grid (w2sd.schedule.make_flow_schedule) reproduces
EULER_SAMPLING = "FlowMatchEulerDiscreteScheduler"
FLOW_SIGMA_SCHEDULERS = ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler")  # Wan's, with use_flow_sigmas


def flow_kind(pipe: Any) -> str | None:
    """"flux" | "sd3" | "wan" for the flow text-to-image/video pipelines W2SD runs, None for every other pipeline."""
    return FLOW_PIPELINES.get(type(pipe).__name__)


def flow_kind_of_class(name: str) -> str | None:
    return FLOW_PIPELINES.get(str(name))


def call_default(pipe: Any, name: str) -> Any:
    """A default of the pipeline's own __call__ (e.g. FluxPipeline's guidance_scale=3.5, WanPipeline's height)."""
    parameter = inspect.signature(type(pipe).__call__).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def has_guidance_embedding(pipe: Any) -> bool:
    return bool(getattr(denoiser_network(pipe).config, "guidance_embeds", False))


# -- the latent space -------------------------------------------------------------------------------------------
def spatial_factor(pipe: Any) -> int:
    return int(pipe.vae_scale_factor_spatial if flow_kind(pipe) == "wan" else pipe.vae_scale_factor)


def noise_shape(pipe: Any, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
    """Shape of one sample's x_T as the pipeline's prepare_latents draws it (before Flux packs it)."""
    kind, f = flow_kind(pipe), spatial_factor(pipe)
    channels = denoiser_network(pipe).config.in_channels
    if kind == "flux":  # 2×2 patches per token: the latent side must be even
        if height % (2 * f) or width % (2 * f):
            raise ConfigError(f"height={height} and width={width} must be multiples of {2 * f} for "
                              f"{type(pipe).__name__} (VAE factor {f} × 2×2 packing)")
        return channels // 4, height // f, width // f
    if height % f or width % f:
        raise ConfigError(f"height={height} and width={width} must be multiples of the VAE factor {f}")
    if kind == "sd3":
        patch = denoiser_network(pipe).config.patch_size
        if (height // f) % patch or (width // f) % patch:
            raise ConfigError(f"height={height} and width={width} must be multiples of {f * patch} for "
                              f"{type(pipe).__name__} (VAE factor {f} × patch size {patch})")
        return channels, height // f, width // f
    temporal = int(pipe.vae_scale_factor_temporal)
    if num_frames is None or num_frames < 1 or (num_frames - 1) % temporal:
        raise ConfigError(f"num_frames={num_frames} must be {temporal}·k + 1 (e.g. 81) for {type(pipe).__name__}: its "
                          f"VAE compresses {temporal} frames into one latent frame after the first")
    return channels, (num_frames - 1) // temporal + 1, height // f, width // f


def packer(pipe: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Flux samples on packed latents (B, h/2·w/2, 4C) as its pipeline does; the others on the drawn latents."""
    if flow_kind(pipe) != "flux":
        return None

    def pack(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return type(pipe)._pack_latents(x, b, c, h, w)

    return pack


def image_seq_len(pipe: Any, x: torch.Tensor) -> int:
    """The token count FluxPipeline / StableDiffusion3Pipeline compute μ (dynamic shifting) from."""
    if flow_kind(pipe) == "flux":
        return int(x.shape[1])
    patch = denoiser_network(pipe).config.patch_size
    return (x.shape[-2] // patch) * (x.shape[-1] // patch)


def latent_space(pipe: Any) -> dict[str, Any]:
    """What makes two pipelines' latents interchangeable: the packing, the latent channels and the VAE's latent
    normalisation (a weight gap between two checkpoints is only meaningful when these agree)."""
    return latent_space_of_configs(flow_kind(pipe), dict(denoiser_network(pipe).config), dict(pipe.vae.config))


VAE_LATENT_KEYS = ("latent_channels", "z_dim", "scaling_factor", "shift_factor", "latents_mean", "latents_std")


def latent_space_of_configs(kind: str | None, transformer: Mapping, vae: Mapping) -> dict[str, Any]:
    return {"packing": "2x2 tokens" if kind == "flux" else "none", "channels": transformer.get("in_channels"),
            **{f"vae.{key}": vae.get(key) for key in VAE_LATENT_KEYS if vae.get(key) is not None}}


def latent_mismatch(a: Mapping, b: Mapping) -> str | None:
    """The first key on which two latent spaces differ, as 'key: a vs b', or None."""
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) != b.get(key):
            return f"{key} {a.get(key)!r} vs {b.get(key)!r}"
    return None


def check_same_latent_space(legs: Mapping[str, Any]) -> None:
    """Every leg of one call runs on the same latents: all flow or all DDPM pipelines, and flow legs with the same
    packing, channels and VAE normalisation. `legs`: name → pipeline."""
    kinds = {name: flow_kind(pipe) for name, pipe in legs.items()}
    flow, ddpm = [n for n, k in kinds.items() if k], [n for n, k in kinds.items() if not k]
    if flow and ddpm:
        raise ConfigError(f"{flow[0]!r} is a flow pipeline ({type(legs[flow[0]]).__name__}) but {ddpm[0]!r} is a DDPM "
                          f"pipeline ({type(legs[ddpm[0]]).__name__}); one W2SD call samples one latent space with "
                          "one schedule, so every leg must be a flow pipeline of the same family")
    names = list(legs)
    for name in names[1:]:
        if kinds[name] is None:
            continue
        if kinds[name] != kinds[names[0]]:
            raise ConfigError(f"latent spaces differ: {names[0]!r} is {type(legs[names[0]]).__name__}, {name!r} is "
                              f"{type(legs[name]).__name__}; pair checkpoints of one family")
        mismatch = latent_mismatch(latent_space(legs[names[0]]), latent_space(legs[name]))
        if mismatch:
            raise ConfigError(f"latent spaces differ between {names[0]!r} and {name!r}: {mismatch}; W2SD pairs only "
                              "checkpoints that share a latent space (same VAE, channels and packing)")


# -- the σ grid -------------------------------------------------------------------------------------------------
def euler_config(pipe: Any) -> dict[str, Any]:
    """The FlowMatchEuler config W2SD samples with: the pipe's own when it ships FlowMatchEuler (Flux, SD3), else
    (Wan's UniPC / DPM++ with flow sigmas) FlowMatchEuler at the scheduler's `flow_shift`, as the SDXL path swaps
    any scheduler for DDIM."""
    return euler_config_of(type(pipe.scheduler).__name__, dict(pipe.scheduler.config), type(pipe).__name__)


def euler_config_of(name: str, config: Mapping, pipeline: str = "the pipeline") -> dict[str, Any]:
    """euler_config from a scheduler class name and its config (e.g. a scheduler_config.json read before loading)."""
    config = dict(config)
    if name == EULER_SAMPLING:
        return config
    if name in FLOW_SIGMA_SCHEDULERS and config.get("use_flow_sigmas") and \
            config.get("prediction_type") == "flow_prediction":
        return {"num_train_timesteps": config.get("num_train_timesteps", 1000),
                "shift": float(config.get("flow_shift") or 1.0)}
    raise ConfigError(f"{pipeline} carries a {name} that is not a flow-matching scheduler W2SD can follow; use "
                      "pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(...) (or a UniPC/DPM++ config "
                      "with use_flow_sigmas and prediction_type='flow_prediction')")


def check_euler_config(config: Mapping) -> None:
    """Refuse scheduler options the W2SD flow grid does not reproduce (w2sd.schedule refuses them) before work."""
    from w2sd.schedule import flow_schedule_from_diffusers

    flow_schedule_from_diffusers(config, 2, mu=0.5 if config.get("use_dynamic_shifting") else None)


def euler_scheduler(pipe: Any) -> Any:
    """diffusers' FlowMatchEulerDiscreteScheduler for `euler_config(pipe)`: the scheduler λ = 0 reproduces."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(euler_config(pipe))


def flow_schedule(pipe: Any, num_steps: int, x: torch.Tensor) -> Any:
    """The σ grid the pipeline's __call__ samples on for `num_steps` and latents x: Flux passes
    sigmas = linspace(1, 1/T, T) and μ from the packed sequence length; SD3 passes μ only with dynamic shifting;
    Wan sets T plain timesteps on its FlowMatchEuler twin."""
    from w2sd.schedule import flow_schedule_from_diffusers, flow_shift_mu

    config, kind = euler_config(pipe), flow_kind(pipe)
    sigmas = mu = None
    if kind == "flux":
        if not config.get("use_flow_sigmas"):
            sigmas = np.linspace(1.0, 1 / num_steps, num_steps)
        mu = flow_shift_mu(image_seq_len(pipe, x), config)
    elif kind == "sd3" and config.get("use_dynamic_shifting"):
        mu = flow_shift_mu(image_seq_len(pipe, x), config)
    return flow_schedule_from_diffusers(config, num_steps, mu=mu, sigmas=sigmas)


# -- conditioning ---------------------------------------------------------------------------------------------
def _embeds(embeds: Mapping[str, torch.Tensor], prefix: str, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    return {k: embeds[f"{prefix}{k}"] for k in keys if f"{prefix}{k}" in embeds}


@torch.inference_mode()
def encode_flow(
    pipe: Any,
    setting: ModelSetting,
    prompts: Sequence[str] | None = None,
    *,
    negative_prompt: str | Sequence[str] | None = None,
    prompt_embeds: Mapping[str, torch.Tensor] | None = None,
    height: int,
    width: int,
    switch: Switch | None = None,
) -> Conditioning:
    """Conditioning of one batch for one setting on a flow pipeline, by the pipeline's own encode_prompt. Only the
    branches the setting runs are encoded (the negative prompt — "" when none is given — only for cfg ≠ 1).
    `prompt_embeds` keys are the pipeline's __call__ names (prompt_embeds, pooled_prompt_embeds,
    negative_prompt_embeds, negative_pooled_prompt_embeds). Flux's text ids and latent image ids are shared by
    every row (`extra["shared"]`)."""
    from w2sd.pipelines.encoding import negative_prompts

    kind, device = flow_kind(pipe), execution_device(pipe)
    switch = switch or Switch(memo=False)
    for name in TEXT_ENCODERS:
        if getattr(pipe, name, None) is not None:
            switch.lora(getattr(pipe, name), setting.lora)
    embeds = dict(prompt_embeds or {})
    text = None if embeds else list(prompts)
    n = len(text) if text is not None else int(next(iter(embeds.values())).shape[0])
    need_uncond = "uncond" in setting.branches
    positive = _embeds(embeds, "", ("prompt_embeds", "pooled_prompt_embeds"))
    negative = _embeds(embeds, "negative_", ("prompt_embeds", "pooled_prompt_embeds"))
    if need_uncond and embeds and "prompt_embeds" not in negative:
        raise ConfigError(f"setting cfg={setting.cfg} runs the unconditional branch, so with prompt_embeds also give "
                          "negative_prompt_embeds" + (" and negative_pooled_prompt_embeds" if kind != "wan" else ""))
    negatives = None if negative else (negative_prompts(negative_prompt, n) or [""] * n)
    cond: dict[str, Any]
    uncond: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    if kind == "flux":
        pe, pooled, text_ids = pipe.encode_prompt(prompt=text, prompt_2=None, device=device, num_images_per_prompt=1,
                                                  **positive)
        cond = {"encoder_hidden_states": pe, "pooled_projections": pooled}
        if need_uncond:
            npe, npooled, _ = pipe.encode_prompt(prompt=negatives, prompt_2=None, device=device,
                                                 num_images_per_prompt=1, **negative)
            uncond = {"encoder_hidden_states": npe, "pooled_projections": npooled}
        f = spatial_factor(pipe)
        h, w = 2 * (height // (f * 2)), 2 * (width // (f * 2))
        shared = {"txt_ids": text_ids,
                  "img_ids": type(pipe)._prepare_latent_image_ids(n, h // 2, w // 2, device, pe.dtype)}
    elif kind == "sd3":
        pe, npe, pooled, npooled = pipe.encode_prompt(
            prompt=text, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=need_uncond, negative_prompt=negatives, **positive,
            **{f"negative_{k}": v for k, v in negative.items()})
        cond = {"encoder_hidden_states": pe, "pooled_projections": pooled}
        if need_uncond:
            uncond = {"encoder_hidden_states": npe, "pooled_projections": npooled}
    else:  # wan: the pipeline casts the text embeddings to the transformer's dtype
        dtype = denoiser_network(pipe).dtype
        pe, npe = pipe.encode_prompt(prompt=text, negative_prompt=negatives, do_classifier_free_guidance=need_uncond,
                                     num_videos_per_prompt=1, device=device,
                                     prompt_embeds=positive.get("prompt_embeds"),
                                     negative_prompt_embeds=negative.get("prompt_embeds"))
        cond = {"encoder_hidden_states": pe.to(dtype)}
        if need_uncond:
            uncond = {"encoder_hidden_states": npe.to(dtype)}
    return Conditioning(cond, uncond, extra={"shared": shared})


# -- the velocity callable --------------------------------------------------------------------------------------
class FlowDenoiser(PipelineDenoiser):
    """v(x, t) of one flow pipeline under one ModelSetting: t is a timestep of the FlowSchedule (σ·1000), x float32
    latents in the sampler's layout (Flux: packed tokens); the transformer's output after the CFG combination is
    handed back as float32 on x's device — the velocity, which the samplers convert."""

    frames_in_batch = False  # Wan's transformer takes one text embedding per video, so rows line up

    def __init__(self, pipe: Any, setting: ModelSetting, conditioning: Conditioning, name: str = "setting",
                 switch: Switch | None = None) -> None:
        super().__init__(pipe, setting, conditioning, name=name, switch=switch)
        self.kind = flow_kind(pipe)
        self.shared = {k: v.to(self.device) for k, v in conditioning.extra.get("shared", {}).items()}
        self.guidance = None
        if self.kind == "flux" and has_guidance_embedding(pipe):
            self.guidance = float(call_default(pipe, "guidance_scale") if setting.guidance is None
                                  else setting.guidance)

    def forward(self, x_in: torch.Tensor, t: float, kwargs: dict[str, Any]) -> torch.Tensor:
        """One transformer pass as the pipeline's loop makes it (timestep dtype and scaling per family)."""
        n = x_in.shape[0]
        if self.kind == "flux":  # FluxPipeline: t in the latents' dtype, divided by 1000; guidance in float32
            timestep = torch.full((n,), t, dtype=torch.float32, device=self.device).to(x_in.dtype) / 1000
            guidance = None if self.guidance is None else \
                torch.full((n,), self.guidance, dtype=torch.float32, device=self.device)
            return self.network(hidden_states=x_in, timestep=timestep, guidance=guidance, return_dict=False,
                                **self.shared, **kwargs)[0]
        timestep = torch.full((n,), t, dtype=torch.float32, device=self.device)
        return self.network(hidden_states=x_in, timestep=timestep, return_dict=False, **kwargs)[0]


def check_flow_setting(name: str, setting: ModelSetting, pipe: Any) -> None:
    """Settings a flow pipeline cannot run, refused before any work (called from adapters.check_setting)."""
    kind = flow_kind(pipe)
    if setting.guidance is not None and not (kind == "flux" and has_guidance_embedding(pipe)):
        which = f"its {type(denoiser_network(pipe)).__name__} has guidance_embeds false (e.g. FLUX.1-schnell)" \
            if kind == "flux" else f"{type(pipe).__name__} has no guidance embedding"
        raise ConfigError(f"setting {name!r}: guidance={setting.guidance} needs a guidance-distilled Flux transformer "
                          f"(config guidance_embeds: true, FLUX.1-dev); {which} — use cfg (true CFG) instead")
    if kind == "wan":
        if getattr(pipe, "transformer_2", None) is not None or getattr(pipe.config, "boundary_ratio", None):
            raise ConfigError(f"setting {name!r}: {type(pipe).__name__} with two transformers (Wan2.2 A14B, "
                              "boundary_ratio) is not supported; use a Wan2.1 T2V checkpoint")
        if getattr(pipe.config, "expand_timesteps", False):
            raise ConfigError(f"setting {name!r}: expand_timesteps=True (Wan2.2 TI2V) is not supported; use a Wan2.1 "
                              "T2V checkpoint")
    euler_config(pipe)


# -- decoding ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def decode_flow(pipe: Any, latents: torch.Tensor, height: int, width: int, output_type: str = "pil") -> Any:
    """Latents → the pipeline's own output class, as its __call__ ends: `latent` returns them as they are (Flux:
    packed); Flux unpacks, then (as SD3) undoes scaling_factor / shift_factor and decodes; Wan undoes latents_mean /
    latents_std and decodes frames."""
    kind, cls = flow_kind(pipe), _output_class(pipe)
    if output_type == "latent":
        return cls(frames=latents) if kind == "wan" else _image_output(cls, latents)
    if kind == "flux":
        latents = type(pipe)._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    if kind != "wan":
        return decode(pipe, latents, output_type)
    vae = pipe.vae
    latents = latents.to(execution_device(pipe), vae.dtype)
    view = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean).view(view).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(view).to(latents.device, latents.dtype)
    video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
    return cls(frames=pipe.video_processor.postprocess_video(video, output_type=output_type))


# -- checks from the configs, before any weight loads -----------------------------------------------------------
def check_flow_specs(models: Mapping[str, Mapping], settings: Mapping[str, ModelSetting]) -> None:
    """What the model specs' configs tell before loading (w2sd/pipelines/loading.py specs): flow and DDPM pipelines
    are not mixed; `guidance` is only set on a Flux model whose transformer has a guidance embedding; every flow
    model shares one latent space. Configs that are not on this machine are checked after loading instead."""
    from w2sd.pipelines.loading import spec_config

    kinds = {name: flow_kind_of_class(spec.get("pipeline")) for name, spec in models.items()}
    used = sorted({s.model for s in settings.values() if s.model in models})
    flow, ddpm = [n for n in used if kinds[n]], [n for n in used if not kinds[n]]
    if flow and ddpm:
        raise ConfigError(f"gap.models.{flow[0]} is a flow pipeline ({models[flow[0]]['pipeline']}) but "
                          f"gap.models.{ddpm[0]} is a DDPM pipeline ({models[ddpm[0]]['pipeline']}); one W2SD run "
                          "samples one latent space with one schedule, so pair flow pipelines of one family")
    for name, setting in settings.items():
        if setting.guidance is None or setting.model not in models:
            continue
        spec = models[setting.model]
        if kinds[setting.model] != "flux":
            raise ConfigError(f"gap.settings.{name}.guidance={setting.guidance} is Flux's guidance embedding, but "
                              f"gap.models.{setting.model} is a {spec.get('pipeline')}; use cfg")
        config = spec_config(spec, "transformer/config.json")
        if config is not None and not config.get("guidance_embeds", False):
            raise ConfigError(f"gap.settings.{name}.guidance={setting.guidance}: the transformer of "
                              f"gap.models.{setting.model} ({spec.get('id') or spec.get('path')}) has guidance_embeds "
                              "false (e.g. FLUX.1-schnell), so there is no guidance to set; drop guidance or use cfg")
    for name in flow:
        scheduler = spec_config(models[name], "scheduler/scheduler_config.json")
        if scheduler is not None:
            try:
                check_euler_config(euler_config_of(scheduler.get("_class_name", ""), scheduler,
                                                   f"gap.models.{name}"))
            except ConfigError as err:
                raise ConfigError(f"gap.models.{name} scheduler: {err}") from err
    spaces = {}
    for name in flow:
        if len({kinds[n] for n in flow}) > 1:
            raise ConfigError(f"latent spaces differ: gap.models use {sorted({models[n]['pipeline'] for n in flow})}; "
                              "pair checkpoints of one family")
        transformer = spec_config(models[name], "transformer/config.json")
        vae = spec_config(models[name], "vae/config.json")
        if transformer is not None and vae is not None:
            spaces[name] = latent_space_of_configs(kinds[name], transformer, vae)
    names = list(spaces)
    for name in names[1:]:
        mismatch = latent_mismatch(spaces[names[0]], spaces[name])
        if mismatch:
            raise ConfigError(f"latent spaces differ between gap.models.{names[0]} and gap.models.{name}: {mismatch}; "
                              "W2SD pairs only checkpoints that share a latent space (same VAE, channels and packing)")
