# Half-precision pipelines (float32 latents, float32 decode when the VAE asks) and offloaded / meta-device networks.
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402

from w2sd.pipelines import ModelSetting, PipelineDenoiser, w2sd_generate  # noqa: E402
from w2sd.pipelines.encoding import encode  # noqa: E402
from w2sd.pipelines.loading import load_pipeline  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

T, SEED = 4, 3
BF16_EPS = 2.0**-8


def latents(pipe, **kwargs) -> torch.Tensor:
    return w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), prompt="a cat", T=T, seed=SEED, height=F.SIZE,
                         width=F.SIZE, output_type="latent", **{"lam": 0, **kwargs}).images


def diffusers_ddim(pipe, **kwargs):
    return F.ddim_twin(pipe)(prompt="a cat", num_inference_steps=T, guidance_scale=1.0, height=F.SIZE, width=F.SIZE,
                             latents=F.unit_noise(pipe, SEED).to(pipe.dtype), **kwargs).images


def test_bf16_lambda_zero_is_within_bf16_rounding_of_diffusers_bf16_pipeline() -> None:
    exact = latents(F.sdxl_pipeline())
    pipe = F.sdxl_pipeline().to(torch.bfloat16)
    ours, ref = latents(pipe), diffusers_ddim(pipe, output_type="latent").float()
    scale = ref.abs().max().item()
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    assert (ours - ref).abs().max().item() <= 8 * BF16_EPS * scale
    # diffusers keeps bf16 latents between steps; ours stay float32, so they are the closer to the float32 run
    assert (ours - exact).abs().max() < (ref - exact).abs().max()


def test_fp16_sdxl_runs_the_unet_in_fp16_keeps_latents_float32_and_decodes_in_float32() -> None:
    pipe = F.sdxl_pipeline().to(torch.float16)
    assert pipe.vae.config.force_upcast  # SDXL's real VAE config
    seen: dict[str, set] = {"unet": set(), "decoder": set()}
    pipe.unet.register_forward_pre_hook(lambda m, args: seen["unet"].add(args[0].dtype))
    pipe.vae.decoder.register_forward_pre_hook(
        lambda m, args: seen["decoder"].add((args[0].dtype, m.conv_in.weight.dtype)))
    assert latents(pipe).dtype == torch.float32
    images = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), prompt="a cat", T=T, lam=1, seed=SEED,
                           height=F.SIZE, width=F.SIZE, output_type="np").images
    assert seen == {"unet": {torch.float16}, "decoder": {(torch.float32, torch.float32)}}
    assert np.isfinite(images).all() and pipe.vae.dtype == torch.float16  # cast back after the decode


def test_latents_mean_and_std_are_undone_before_decoding_as_in_the_sdxl_pipeline() -> None:
    pipe = F.sdxl_pipeline()
    pipe.vae.register_to_config(latents_mean=[0.3, -0.2, 0.1, 0.5], latents_std=[0.8, 1.3, 0.6, 1.1])
    ours = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), prompt="a cat", T=T, lam=0, seed=SEED,
                         height=F.SIZE, width=F.SIZE, output_type="np").images
    np.testing.assert_allclose(ours, diffusers_ddim(pipe, output_type="np"), atol=1e-4, rtol=0)


def test_model_cpu_offload_pipeline_gives_the_same_samples() -> None:
    """The CPU half of part 5 (offload onto CUDA, sequential offload and legs on different devices are in
    benchmarks/gpu_smoke.py: enable_sequential_cpu_offload fails inside accelerate on CPU with this torch)."""
    plain, offloaded = F.sd15_pipeline(), F.sd15_pipeline()
    offloaded.enable_model_cpu_offload(device="cpu")
    assert torch.equal(latents(offloaded, lam=2), latents(plain, lam=2))


def test_network_on_meta_without_offload_hooks_fails_with_one_line() -> None:
    pipe = F.sd15_pipeline()
    cond = encode(pipe, ModelSetting(), ["a cat"], height=F.SIZE, width=F.SIZE)
    pipe.unet.to("meta")
    with pytest.raises(ConfigError) as err:
        PipelineDenoiser(pipe, ModelSetting(), cond)
    assert "\n" not in str(err.value) and "meta" in str(err.value) and "enable_model_cpu_offload" in str(err.value)


def test_spec_loads_an_fp16_sdxl_folder_with_its_own_scheduler_and_model_offload(tmp_path) -> None:
    F.sdxl_pipeline().save_pretrained(tmp_path / "sdxl")
    spec = {"pipeline": "StableDiffusionXLPipeline", "path": str(tmp_path / "sdxl"), "dtype": "float16",
            "offload": "model"}
    pipe = load_pipeline("gap.models.base", spec, "cpu")
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler" and hasattr(pipe.unet, "_hf_hook")
    out = latents(pipe, lam=2)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="offload='gpu'") as err:
        load_pipeline("gap.models.base", {**spec, "offload": "gpu"})
    assert "\n" not in str(err.value)
