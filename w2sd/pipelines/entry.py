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

from w2sd.pipelines.adapters import ModelSetting, PipelineDenoiser, denoiser_network, has_ip_adapter
from w2sd.pipelines.encoding import encode
from w2sd.pipelines.latents import decode, initial_noise, latent_shape, vae_scale_factor
from w2sd.sampling import sample_w2sd
from w2sd.schedule import schedule_from_diffusers
from w2sd.validation import ConfigError

PipeSetting = tuple[Any, Mapping | ModelSetting]


def w2sd_generate(
    strong: PipeSetting,
    weak: PipeSetting,
    prompt: str | Sequence[str] | None = None,
    *,
    final: PipeSetting | None = None,
    T: int = 50,
    lam: int | None = None,
    seed: int | Sequence[int] = 0,
    inversion: str = "exact",
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    negative_prompt: str | None = None,
    prompt_embeds: Mapping[str, Any] | None = None,
    control_image: Any = None,
    ip_adapter_image: Any = None,
    output_type: str = "pil",
) -> Any:
    """Sample with W2SD (paper Alg. 1) and return what `final`'s pipeline returns (e.g. `.images`, `.frames`).

    strong/weak: (pipeline, setting) of the reflection legs; final: of the main denoising step (default: strong).
    A setting is a ModelSetting or a dict with its keys (cfg, lora, control_scale, ip_adapter_scale, moe);
    ip_adapter_image goes to every pipe with an IP-Adapter loaded, each leg weighting it by its ip_adapter_scale.
    T steps of the DDIM schedule of the final pipeline's scheduler config, λ = lam reflected steps (default T − 1);
    seed: one per prompt (a list) or the first of consecutive seeds. λ = 0 is exactly the plain DDIM pipeline.
    """
    final = final or strong
    pipe = final[0]
    prompts = [prompt] if isinstance(prompt, str) or prompt is None else list(prompt)
    n = len(prompts) if prompt_embeds is None else int(next(iter(prompt_embeds.values())).shape[0])
    seeds = list(seed) if isinstance(seed, Sequence) else [int(seed) + i for i in range(n)]
    if len(seeds) != n:
        raise ConfigError(f"seed has {len(seeds)} entries for {n} prompts; give one seed per prompt")
    default = getattr(pipe, "default_sample_size", None) or int(denoiser_network(pipe).config.sample_size)
    height = height or default * vae_scale_factor(pipe)
    width = width or default * vae_scale_factor(pipe)
    controls = None if control_image is None else [control_image] * n
    ip_images = None if ip_adapter_image is None else [ip_adapter_image] * n
    denoisers = {}
    for role, (role_pipe, setting) in {"strong": strong, "weak": weak, "final": final}.items():
        setting = ModelSetting.from_config(role, setting)
        cond = encode(role_pipe, setting, prompts, negative_prompt=negative_prompt, prompt_embeds=prompt_embeds,
                      height=height, width=width, num_frames=num_frames,
                      control_images=controls if setting.control_scale else None,
                      ip_adapter_images=ip_images if has_ip_adapter(denoiser_network(role_pipe)) else None)
        denoisers[role] = PipelineDenoiser(role_pipe, setting, cond, name=role)
    schedule = schedule_from_diffusers(dict(pipe.scheduler.config), T)
    x, generators = initial_noise(pipe, seeds, latent_shape(pipe, height, width, num_frames))
    device = denoisers["final"].network.device
    out = sample_w2sd(denoisers["strong"], denoisers["weak"], x.to(device), schedule, lam=lam, inversion=inversion,
                      final=denoisers["final"], generators=generators)
    return decode(pipe, out.x, output_type)
