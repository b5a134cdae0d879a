# A pipeline's latent space: latent shapes, per-sample initial noise, and decoding to the pipeline's output type.
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from w2sd.pipelines.adapters import denoiser_network
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
    """x_T for each seed (one CPU generator per sample), scaled by the scheduler's initial σ as the pipelines do,
    and the generators after that draw: samplers that draw fresh noise continue them, so it is never x_T again."""
    generators = per_sample_generators(seeds)
    x = per_sample_randn(generators, shape, torch.float32)
    return x * float(getattr(pipe.scheduler, "init_noise_sigma", 1.0)), generators


@torch.no_grad()
def decode(pipe: Any, latents: torch.Tensor, output_type: str = "pil") -> Any:
    """Latents → the pipeline's own output class (images, or frames for video pipelines)."""
    latents = latents.to(pipe.vae.device, pipe.vae.dtype)
    if latents.dim() == 5:
        video = pipe.decode_latents(latents)
        frames = pipe.video_processor.postprocess_video(video=video, output_type=output_type)
        return _output_class(pipe)(frames=frames)
    image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
    processor = getattr(pipe, "image_processor", None) or VaeImageProcessor(vae_scale_factor=vae_scale_factor(pipe))
    images = processor.postprocess(image.float(), output_type=output_type)
    cls = _output_class(pipe)
    if cls is ImagePipelineOutput:
        return cls(images=images)
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
