# The diffusers-native entry point: W2SD images from pipelines you already hold, in one call.
"""Example (LoRA pair sharing one UNet, paper App. B.1: legs at CFG 1, main step LoRA 0.8 at CFG 5.5):

    pipe.load_lora_weights("path/to/xlMoreArtFullV1.safetensors", adapter_name="art")
    out = w2sd_generate(strong=(pipe, {"lora": {"art": 0.8}, "cfg": 1.0}), weak=(pipe, {"lora": {"art": -1.5},
                        "cfg": 1.0}), final=(pipe, {"lora": {"art": 0.8}, "cfg": 5.5}), prompt="a cat", seed=0)
    out.images[0].save("w2sd.png")
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from w2sd.methods import resolve_method
from w2sd.pipelines.adapters import ModelSetting
from w2sd.pipelines.generation import Batch, GenerationConfig, StepCallback, generate, seeded
from w2sd.validation import ConfigError

PipeSetting = tuple[Any, Mapping | ModelSetting]


def _per_image(values: Sequence | None, k: int) -> tuple | None:
    """Repeat each per-prompt entry k times (diffusers' num_images_per_prompt order: p1, p1, p2, p2)."""
    return None if values is None else tuple(v for v in values for _ in range(k))


def w2sd_generate(
    strong: PipeSetting,
    weak: PipeSetting,
    prompt: str | Sequence[str] | None = None,
    *,
    final: PipeSetting | None = None,
    method: str | Mapping = "w2sd",
    T: int = 50,
    lam: int | None = None,
    inversion: str = "exact",
    seed: int | Sequence[int] | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    latents: torch.Tensor | None = None,
    num_images_per_prompt: int = 1,
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    negative_prompt: str | Sequence[str] | None = None,
    prompt_embeds: Mapping[str, Any] | None = None,
    control_image: Any = None,
    ip_adapter_image: Any = None,
    output_type: str = "pil",
    return_dict: bool = True,
    callback_on_step_end: StepCallback | None = None,
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
) -> Any:
    """Sample with W2SD (paper Alg. 1) and return what `final`'s pipeline returns (e.g. `.images`, `.frames`).

    strong/weak: (pipeline, setting) of the reflection legs; final: of the main denoising step (default: strong).
    A setting is a ModelSetting or a dict with its keys (cfg, lora, control_scale, ip_adapter_scale, moe);
    ip_adapter_image goes to every pipe with an IP-Adapter loaded, each leg weighting it by its ip_adapter_scale.
    T steps of the DDIM schedule of the final pipeline's scheduler config, λ = lam reflected steps (default T − 1).
    method: "w2sd" (default), "autoguidance", "resampling", "ddim" (strong alone), or a method spec such as
    {"sampler": "autoguidance", "w": 1.0} whose roles name strong/weak/final. λ = 0 is exactly the DDIM pipeline.

    As a diffusers pipeline: negative_prompt is one string or one per prompt; num_images_per_prompt repeats each
    prompt; output_type pil | np | pt | latent (latents, not decoded); return_dict=False gives the output's tuple;
    callback_on_step_end(pipe, i, t, {"latents": x}) runs after every step and may return new latents; the final
    pipeline's progress bar and safety checker are used (turn them off with pipe.set_progress_bar_config(disable=
    True) and pipe.safety_checker = None). Noise: `generator` (one for the whole batch or a list, one per image)
    or `seed` (an int: consecutive seeds from it, one per image; a list: one per image; default 0) — not both.
    `latents` replaces the x_T draw (unit-variance noise, shape (images, C, [F,] h, w)); the seeds or generators
    still feed the fresh noise some samplers draw. Every pipe's LoRA scales, IP-Adapter scale and MoE routing are
    restored when the call returns or raises.
    """
    if seed is not None and generator is not None:
        raise ConfigError("both seed and generator were given; pass one (generator as in diffusers, or seed)")
    if num_images_per_prompt < 1:
        raise ConfigError(f"num_images_per_prompt={num_images_per_prompt} must be >= 1")
    final, k = final or strong, num_images_per_prompt
    embeds = None if prompt_embeds is None else {key: v.repeat_interleave(k, dim=0) for key, v in prompt_embeds.items()}
    prompts = None if embeds else _per_image([prompt] if isinstance(prompt, str) or prompt is None else prompt, k)
    n = int(next(iter(embeds.values())).shape[0]) if embeds else len(prompts)
    batch = Batch(prompts=prompts, prompt_embeds=embeds,
                  control_images=None if control_image is None else (control_image,) * n,
                  ip_adapter_images=None if ip_adapter_image is None else (ip_adapter_image,) * n)
    negative = negative_prompt if negative_prompt is None or isinstance(negative_prompt, str) \
        else _per_image(negative_prompt, k)
    models = {role: (pipe, ModelSetting.from_config(role, setting))
              for role, (pipe, setting) in {"strong": strong, "weak": weak, "final": final}.items()}
    spec = {"sampler": method} if isinstance(method, str) else dict(method)
    if spec.get("sampler") == "w2sd":
        spec.setdefault("final", "final")
    resolved = resolve_method("method", spec, {"lam": lam, "inversion": inversion},
                              {name: setting for name, (_, setting) in models.items()}, T)
    config = GenerationConfig(T=T, height=height, width=width, num_frames=num_frames, negative_prompt=negative,
                              output_type=output_type, safety_checker=True)
    out = generate(resolved, models, batch, config, seeds=None if generator is not None else seeded(seed, n),
                   generator=generator, latents=latents, callback_on_step_end=callback_on_step_end,
                   callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs).output
    return out if return_dict else out.to_tuple()
