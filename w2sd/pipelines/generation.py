# The one generation path on diffusers pipelines: encode → denoisers → x_T → schedule → any method → decode.
"""`w2sd_generate` (one call on pipelines you hold) and the generation experiment (once per Lightning batch) both
call `generate`, so a fix to any stage lands in one place. Per-leg model state (LoRA, IP-Adapter scale, MoE routing)
is switched inside `preserved`, so the pipelines come back exactly as they were handed in, also after an error. Flow
pipelines (Flux, SD3, Wan) take the same path; w2sd/pipelines/flow.py supplies their conditioning, velocity
callable, latent layout, σ grid and decoding."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from w2sd.methods import run_method
from w2sd.pipelines.adapters import (
    ModelSetting,
    PipelineDenoiser,
    denoiser_network,
    execution_device,
    has_ip_adapter,
)
from w2sd.pipelines.encoding import encode
from w2sd.pipelines.flow import (
    FlowDenoiser,
    call_default,
    check_same_latent_space,
    decode_flow,
    encode_flow,
    flow_kind,
    flow_schedule,
    noise_shape,
    packer,
)
from w2sd.pipelines.latents import _output_class, decode, initial_noise, latent_shape, vae_scale_factor
from w2sd.pipelines.state import Switch, preserved
from w2sd.schedule import schedule_from_diffusers
from w2sd.validation import ConfigError, check_choice

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
CALLBACK_TENSOR_INPUTS = ("latents",)  # what callback_on_step_end may read and replace
StepCallback = Callable[[Any, int, int, dict[str, torch.Tensor]], dict[str, torch.Tensor] | None]


@dataclass(frozen=True)
class GenerationConfig:
    """What is shared by every sample of a generation call."""

    T: int = 50                                          # DDIM steps over the output pipeline's training schedule
    height: int | None = None                            # None: the output pipeline's default size
    width: int | None = None
    num_frames: int | None = None                        # frames for video pipelines (AnimateDiff, Wan); None: images
    negative_prompt: str | tuple[str, ...] | None = None  # one for all samples, or one per sample
    output_type: str = "pil"                             # pil | np | pt | latent (no decoding)
    safety_checker: bool = False                         # run the output pipeline's safety checker if it has one


@dataclass(frozen=True)
class Batch:
    """Per-sample inputs, one entry per sample (give `prompts` or `prompt_embeds`)."""

    prompts: tuple[str, ...] | None = None
    refined: tuple[str, ...] | None = None               # conditions settings with prompt=refined
    prompt_embeds: Mapping[str, torch.Tensor] | None = None  # keys as the pipeline's __call__ (prompt_embeds, ...)
    control_images: tuple[Any, ...] | None = None        # ControlNet inputs (used by settings with control_scale)
    ip_adapter_images: tuple[Any, ...] | None = None     # IP-Adapter image prompts (every leg on an IP-Adapter net)

    def __len__(self) -> int:
        if self.prompt_embeds:
            return int(next(iter(self.prompt_embeds.values())).shape[0])
        if self.prompts is None:
            raise ConfigError("give prompts or prompt_embeds")
        return len(self.prompts)


@dataclass
class Generated:
    output: Any          # the output pipeline's own output class: `.images` (`.frames` for video); latents if "latent"
    latents: torch.Tensor  # final latents, before decoding
    nfe: int             # denoiser calls per sample, counted by the sampler


def default_size(pipe: Any, side: str = "height") -> int:
    """The pipeline's default image side in pixels, as its __call__ picks it (Wan: its 480 × 832 defaults)."""
    if isinstance(call_default(pipe, side), int):
        return int(call_default(pipe, side))
    sample = getattr(pipe, "default_sample_size", None) or int(denoiser_network(pipe).config.sample_size)
    return sample * vae_scale_factor(pipe)


def starting_noise(
    pipe: Any,
    shape: Sequence[int],
    n: int,
    *,
    seeds: Sequence[int] | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    latents: torch.Tensor | None = None,
    pack: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Generator]]:
    """(x_T, one generator per sample for samplers that draw fresh noise later).

    seeds: one CPU generator per seed (images independent of batch size). generator: as in diffusers — a list gives
    sample i its own generator, one generator draws the whole batch (and all later noise) in order. latents: x_T
    itself (unit variance, as diffusers' `latents=` with a DDIM scheduler); then only the later noise comes from
    the seeds or generators, which for seeds advance exactly as if they had drawn x_T. `pack` puts drawn noise in
    the sampler's layout (Flux's packed tokens); `latents` are given in that layout, as the pipeline takes them."""
    if generator is None:
        x, generators = initial_noise(pipe, seeds, shape)
    else:
        generators = list(generator) if isinstance(generator, Sequence) else [generator] * n
        if len(generators) != n:
            raise ConfigError(f"generator is a list of {len(generators)} for {n} images; pass one per image "
                              "(prompts × num_images_per_prompt) or a single generator")
        x = None if latents is not None else randn_tensor((n, *shape), generator=generator, dtype=torch.float32,
                                                          device=torch.device("cpu"))
    if pack is not None:
        shape = tuple(pack(torch.zeros(1, *shape)).shape[1:])
        x = None if x is None else pack(x)
    if latents is not None:
        if tuple(latents.shape) != (n, *shape):
            raise ConfigError(f"latents have shape {tuple(latents.shape)}; this call needs {(n, *shape)} "
                              "(images, channels, [frames,] height/vae_factor, width/vae_factor)")
        x = latents.to(torch.float32)
    return x, generators


def _diffusers_callback(pipe: Any, callback: StepCallback | None, tensor_inputs: Sequence[str], bar: Any):
    """A sampler callback that advances the progress bar and calls a diffusers-style `callback_on_step_end`; the
    latents it returns replace the sampler's in place, so the loop continues from them as in diffusers."""

    def on_step(state: dict[str, Any]) -> None:
        if callback is not None:
            x = state["x"]
            returned = callback(pipe, state["i"], state["t"], {"latents": x} if "latents" in tensor_inputs else {})
            new = (returned or {}).get("latents")
            if new is not None and new is not x:
                x.copy_(new)
        bar.update()

    return on_step


def _checked(pipe: Any, x: torch.Tensor, output_type: str) -> Any:
    """Decode and run the pipeline's safety checker, as its __call__ does (flagged images come back black)."""
    decoded = decode(pipe, x, "np")
    images, nsfw = pipe.run_safety_checker(decoded.images, execution_device(pipe), denoiser_network(pipe).dtype)
    if output_type == "pil":
        images = pipe.image_processor.numpy_to_pil(images)
    elif output_type == "pt":
        images = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)
    return _output_class(pipe)(images=images, nsfw_content_detected=nsfw)  # pipelines with a checker have the flag


def generate(
    method: Mapping[str, Any],
    models: Mapping[str, tuple[Any, ModelSetting]],
    batch: Batch,
    config: GenerationConfig,
    *,
    seeds: Sequence[int] | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    latents: torch.Tensor | None = None,
    callback_on_step_end: StepCallback | None = None,
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
) -> Generated:
    """Generate one batch with any method.

    method: a resolved method spec ({sampler, roles, options} from `w2sd.methods.resolve_method`); its roles name
    entries of `models` (name → (pipeline, setting)). The output pipeline — role final, else strong, else model —
    gives the schedule (its scheduler config), the latent space and the output class. Give `seeds` (one per
    sample) or `generator` (see `starting_noise`); `latents` replaces the x_T draw. callback_on_step_end is called
    as in diffusers, `(pipe, i, t, {"latents": x})` after every sampling step, and may return new latents.
    The progress bar is the output pipeline's (`pipe.set_progress_bar_config` applies)."""
    check_choice("output_type", config.output_type, OUTPUT_TYPES)
    unknown = sorted(set(callback_on_step_end_tensor_inputs) - set(CALLBACK_TENSOR_INPUTS))
    if unknown:
        raise ConfigError(f"callback_on_step_end_tensor_inputs {unknown} are not available here; use "
                          f"{list(CALLBACK_TENSOR_INPUTS)}")
    roles = method["roles"]
    pipe = models[roles.get("final") or roles.get("strong") or roles["model"]][0]
    names = sorted(set(roles.values()))
    check_same_latent_space({name: models[name][0] for name in names})
    flow = flow_kind(pipe) is not None
    n = len(batch)
    height, width = config.height or default_size(pipe), config.width or default_size(pipe, "width")
    num_frames = config.num_frames if config.num_frames is not None or flow_kind(pipe) != "wan" \
        else call_default(pipe, "num_frames")
    shape = noise_shape(pipe, height, width, num_frames) if flow else latent_shape(pipe, height, width, num_frames)
    x, generators = starting_noise(pipe, shape, n, seeds=seeds, generator=generator, latents=latents,
                                   pack=packer(pipe))
    schedule = flow_schedule(pipe, config.T, x) if flow else schedule_from_diffusers(dict(pipe.scheduler.config),
                                                                                      config.T)
    switch = Switch()
    with preserved(models[name][0] for name in names):
        denoisers = {}
        for name in names:
            leg_pipe, setting = models[name]
            prompts = batch.refined if setting.prompt == "refined" else batch.prompts
            if flow:
                cond = encode_flow(leg_pipe, setting, prompts, negative_prompt=config.negative_prompt,
                                   prompt_embeds=batch.prompt_embeds, height=height, width=width, switch=switch)
                denoisers[name] = FlowDenoiser(leg_pipe, setting, cond, name=name, switch=switch)
                continue
            cond = encode(leg_pipe, setting, prompts, negative_prompt=config.negative_prompt,
                          prompt_embeds=batch.prompt_embeds, height=height, width=width, num_frames=config.num_frames,
                          control_images=batch.control_images if setting.control_scale else None,
                          ip_adapter_images=batch.ip_adapter_images
                          if has_ip_adapter(denoiser_network(leg_pipe)) else None, switch=switch)
            denoisers[name] = PipelineDenoiser(leg_pipe, setting, cond, name=name, switch=switch)
        device = execution_device(pipe)
        with pipe.progress_bar(total=schedule.num_steps) as bar:
            on_step = _diffusers_callback(pipe, callback_on_step_end, callback_on_step_end_tensor_inputs, bar)
            out = run_method(method, denoisers, x.to(device), schedule, generators=generators, callback=on_step)
    if flow:
        return Generated(decode_flow(pipe, out.x, height, width, config.output_type), out.x, out.nfe)
    checked = config.safety_checker and config.output_type != "latent" and config.num_frames is None
    if checked and getattr(pipe, "safety_checker", None) is not None:
        return Generated(_checked(pipe, out.x, config.output_type), out.x, out.nfe)
    return Generated(decode(pipe, out.x, config.output_type), out.x, out.nfe)


def seeded(base: int | Sequence[int] | None, n: int) -> list[int]:
    """One seed per sample: a list as given, an int the first of n consecutive seeds."""
    seeds = [int(s) for s in base] if isinstance(base, Sequence) else [int(base or 0) + i for i in range(n)]
    if len(seeds) != n:
        raise ConfigError(f"seed has {len(seeds)} entries for {n} images; give one seed per image or one int")
    return seeds

