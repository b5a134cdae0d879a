# Encoding prompts, class labels, control and IP-Adapter images with a pipeline's own encoders into Conditioning.
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2sd.pipelines.adapters import Conditioning, ModelSetting, denoiser_network, execution_device, has_ip_adapter
from w2sd.pipelines.state import Switch
from w2sd.validation import ConfigError


def is_sdxl(pipe: Any) -> bool:
    """SDXL-style networks take pooled text embeddings and size/crop time ids as added conditioning."""
    return getattr(denoiser_network(pipe).config, "addition_embed_type", None) == "text_time"


def is_class_conditional(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder", None) is None and hasattr(pipe, "transformer")


def class_labels(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """ImageNet class ids from prompts that are ids ("207") or label names ("golden retriever")."""
    ids = []
    for p in prompts:
        p = str(p).strip()
        if p.isdigit():
            ids.append(int(p))
            continue
        try:
            ids.extend(pipe.get_label_ids([p]))
        except (ValueError, AttributeError, KeyError, TypeError) as err:
            raise ConfigError(f"prompt {p!r} is neither a class id nor a label name this DiT knows") from err
    return torch.tensor(ids, dtype=torch.long)


def negative_prompts(negative_prompt: str | Sequence[str] | None, n: int) -> list[str] | None:
    """One negative prompt per sample: a str applies to all (as in diffusers), a list must have one per sample."""
    if negative_prompt is None or isinstance(negative_prompt, str):
        return None if negative_prompt is None else [negative_prompt] * n
    negatives = list(negative_prompt)
    if len(negatives) != n:
        raise ConfigError(f"negative_prompt has {len(negatives)} entries for {n} prompts; give one string or one "
                          "per prompt")
    return negatives


@torch.inference_mode()
def encode(
    pipe: Any,
    setting: ModelSetting,
    prompts: Sequence[str] | None = None,
    *,
    negative_prompt: str | Sequence[str] | None = None,
    prompt_embeds: dict[str, torch.Tensor] | None = None,
    height: int,
    width: int,
    num_frames: int | None = None,
    control_images: Sequence[Any] | None = None,
    ip_adapter_images: Sequence[Any] | None = None,
    switch: Switch | None = None,
) -> Conditioning:
    """Conditioning of one batch for one setting. `prompt_embeds` may replace `prompts` (keys as the pipeline's
    __call__: prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds). The
    setting's LoRA scales are applied to the text encoders first (through `switch`, the call's state switch), so a
    LoRA that patches them acts there too; a str `negative_prompt` applies to every prompt.
    `ip_adapter_images` (one per prompt) become `added_cond_kwargs["image_embeds"]` as the pipeline's __call__
    makes them: image-encoder embeds for the conditional branch, diffusers' negative embeds for the other."""
    device = execution_device(pipe)
    if is_class_conditional(pipe):
        labels = class_labels(pipe, prompts).to(device)
        null = denoiser_network(pipe).config.num_embeds_ada_norm
        return Conditioning({"class_labels": labels}, {"class_labels": torch.full_like(labels, null)})
    switch = switch or Switch(memo=False)
    for name in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            switch.lora(getattr(pipe, name), setting.lora)
    embeds = dict(prompt_embeds or {})
    text = None if embeds else list(prompts)
    n = len(text) if text is not None else int(next(iter(embeds.values())).shape[0])
    negative_prompt = None if "negative_prompt_embeds" in embeds else negative_prompts(negative_prompt, n)
    if is_sdxl(pipe):
        per_prompt = "num_videos_per_prompt" if num_frames is not None else "num_images_per_prompt"
        pe, npe, pooled, npooled = pipe.encode_prompt(
            prompt=text, device=device, do_classifier_free_guidance=True, negative_prompt=negative_prompt,
            **{per_prompt: 1}, **embeds)
        projection = pipe.text_encoder_2.config.projection_dim if pipe.text_encoder_2 is not None \
            else int(pooled.shape[-1])
        time_ids = pipe._get_add_time_ids((height, width), (0, 0), (height, width), dtype=pe.dtype,
                                          text_encoder_projection_dim=projection).to(device)
        time_ids = time_ids.repeat(pe.shape[0], 1)
        cond = {"encoder_hidden_states": pe, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}
        uncond = {"encoder_hidden_states": npe, "added_cond_kwargs": {"text_embeds": npooled, "time_ids": time_ids}}
    else:
        pe, npe = pipe.encode_prompt(text, device, 1, True, negative_prompt=negative_prompt, **embeds)
        cond, uncond = {"encoder_hidden_states": pe}, {"encoder_hidden_states": npe}
    if num_frames is not None:  # motion UNets take one text embedding per frame, batch-major
        for branch in (cond, uncond):
            branch["encoder_hidden_states"] = branch["encoder_hidden_states"].repeat_interleave(num_frames, dim=0)
    if ip_adapter_images is not None:
        if num_frames is not None:
            raise ConfigError("IP-Adapter images are not supported on video pipelines here; drop the IP-Adapter")
        image_embeds(pipe, ip_adapter_images, cond, uncond)
    control = None
    if control_images is not None:
        processor = getattr(pipe, "control_image_processor", None)
        if processor is None:
            raise ConfigError(f"{type(pipe).__name__} takes no control image; use a ControlNet pipeline class")
        control = processor.preprocess(list(control_images), height=height, width=width).to(device, pe.dtype)
    return Conditioning(cond, uncond, control_image=control)


def image_embeds(pipe: Any, images: Sequence[Any], cond: dict, uncond: dict) -> None:
    """Add the IP-Adapter embeddings of one image per prompt to both branches' added_cond_kwargs."""
    if not has_ip_adapter(denoiser_network(pipe)) or getattr(pipe, "image_encoder", None) is None:
        raise ConfigError(f"{type(pipe).__name__} has no IP-Adapter with an image encoder; load one with "
                          "pipe.load_ip_adapter(...) (config: models.<name>.ip_adapter)")
    device = execution_device(pipe)
    # per prompt: one (negative ‖ positive) tensor per loaded adapter, exactly as the pipeline's __call__ builds it
    per_prompt = [pipe.prepare_ip_adapter_image_embeds(image, None, device, 1, True) for image in images]
    halves = [[embeds.chunk(2) for embeds in adapters] for adapters in per_prompt]
    for branch, half in ((uncond, 0), (cond, 1)):
        branch.setdefault("added_cond_kwargs", {})["image_embeds"] = [
            torch.cat([adapters[k][half] for adapters in halves]) for k in range(len(halves[0]))]
