# A pipeline's latent space: latent shapes, per-sample initial noise, and decoding to the pipeline's output type.
from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from w2sd.pipelines.adapters import denoiser_network, execution_device
from w2sd.seeding import per_sample_generators, per_sample_randn


def vae_scale_factor(pipe: Any) -> int:
    return 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def latent_shape(pipe: Any, height: int, width: int, num_frames: int | None = None) -> tuple[int, ...]:
    """Shape of one sample's latent (no batch dimension); videos are (C, F, h, w) as in AnimateDiff."""
    network = denoiser_network(pipe)
    channels = network.config.in_channels
    f = vae_scale_factor(pipe)
    if height % f or width % f:
        raise ValueError(f"height={height} and width={width} must be multiples of the VAE factor {f}")
    spatial = (height // f, width // f)
    return (channels, num_frames, *spatial) if num_frames is not None else (channels, *spatial)


def initial_noise(pipe: Any, seeds: Sequence[int], shape: Sequence[int]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Unit-variance float32 x_T for each seed (one CPU generator per sample), and the generators after that draw:
    samplers that draw fresh noise continue them, so it is never x_T again. The W2SD loop runs DDIM whatever
    scheduler the pipe carries, so x_T is not scaled by that scheduler's `init_noise_sigma` (≈ 14.6 for Euler)."""
    generators = per_sample_generators(seeds)
    return per_sample_randn(generators, shape, torch.float32), generators


@contextmanager
def vae_precision(vae: Any) -> Iterator[torch.dtype]:
    """The dtype to decode in: a float16 VAE whose config says `force_upcast` (the stock SD/SDXL VAEs overflow to
    NaN in float16) runs in float32 for the decode and is cast back afterwards, as diffusers' SDXL pipelines do."""
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        yield vae.dtype
    finally:
        if upcast:
            vae.to(dtype=torch.float16)


def unscale(vae_config: Any, latents: torch.Tensor) -> torch.Tensor:
    """Diffusion latents → VAE latents: undo `latents_mean/std` when the VAE has them (as StableDiffusionXLPipeline),
    else divide by `scaling_factor`; add `shift_factor` when set."""
    mean, std = getattr(vae_config, "latents_mean", None), getattr(vae_config, "latents_std", None)
    if mean is not None and std is not None:
        view = (1, -1) + (1,) * (latents.dim() - 2)
        mean, std = (torch.tensor(v).view(view).to(latents.device, latents.dtype) for v in (mean, std))
        return latents * std / vae_config.scaling_factor + mean
    return latents / vae_config.scaling_factor + (getattr(vae_config, "shift_factor", None) or 0.0)


@torch.no_grad()
def decode(pipe: Any, latents: torch.Tensor, output_type: str = "pil") -> Any:
    """Latents → the pipeline's own output class (images, or frames for video pipelines); `output_type="latent"`
    returns the latents undecoded, as diffusers pipelines do."""
    video = latents.dim() == 5
    cls = _output_class(pipe)
    if output_type == "latent":
        return cls(frames=latents) if video else _image_output(cls, latents)
    with vae_precision(pipe.vae) as dtype:
        latents = latents.to(execution_device(pipe), dtype)
        if video:  # the pipeline's own decode_latents: frames into the batch, 1/scaling_factor as diffusers does
            frames = pipe.video_processor.postprocess_video(video=pipe.decode_latents(latents),
                                                            output_type=output_type)
            return cls(frames=frames)
        image = pipe.vae.decode(unscale(pipe.vae.config, latents), return_dict=False)[0]
    watermark = getattr(pipe, "watermark", None)  # SDXL pipelines mark images when invisible-watermark is installed
    if watermark is not None:
        image = watermark.apply_watermark(image)
    processor = getattr(pipe, "image_processor", None) or VaeImageProcessor(vae_scale_factor=vae_scale_factor(pipe))
    return _image_output(cls, processor.postprocess(image.float(), output_type=output_type))


def _image_output(cls: type, images: Any) -> Any:
    fields = getattr(cls, "__dataclass_fields__", {})
    return cls(images=images, **({"nsfw_content_detected": None} if "nsfw_content_detected" in fields else {}))


def _output_class(pipe: Any) -> type:
    """The output dataclass the pipeline's __call__ returns (looked up in its module, e.g. …PipelineOutput)."""
    module = sys.modules[type(pipe).__module__]
    for name in dir(module):
        obj = getattr(module, name)
        if isinstance(obj, type) and name.endswith("PipelineOutput"):
            return obj
    return ImagePipelineOutput


def to_uint8(images: Any) -> np.ndarray:
    """Decoded images/frames as uint8 arrays (…, H, W, 3), whatever the output type was."""
    if isinstance(images, list) and images and hasattr(images[0], "size") and not isinstance(images[0], np.ndarray):
        return np.stack([np.asarray(im) for im in images])
    array = np.asarray(images)
    return (array * 255).round().clip(0, 255).astype(np.uint8) if array.dtype != np.uint8 else array
