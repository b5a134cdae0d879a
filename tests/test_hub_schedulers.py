# Whatever scheduler a real checkpoint ships, λ = 0 is diffusers' DDIM pipeline from that config, from unit x_T.
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402

from w2sd.pipelines import w2sd_generate  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

T, SEED, TOL = 4, 3, 1e-4

# scheduler class → (tiny pipeline of the checkpoint whose real scheduler_config.json it is or is built from,
# scheduler class to switch to with .from_config (None: the checkpoint's own), options of that switch)
CASES = {
    "PNDMScheduler": (F.sd15_pipeline, None, {}),                                        # SD1.5 as shipped
    "DEISMultistepScheduler": (lambda: F.sd_pipeline(F.DREAMSHAPER, unet_repo=F.SD15), None, {}),  # DreamShaper-8
    "EulerDiscreteScheduler": (F.sdxl_pipeline, None, {}),                               # SDXL base as shipped
    "EulerDiscreteScheduler-no-clip_sample-key": (lambda: F.sdxl_pipeline(repo=F.JUGGERNAUT), None, {}),
    "DDIMScheduler": (F.sdxl_pipeline, DDIMScheduler, {}),                               # the released code's choice
    "EulerAncestralDiscreteScheduler": (F.sdxl_pipeline, EulerAncestralDiscreteScheduler, {}),
    "DPMSolverMultistepScheduler": (F.sd15_pipeline, DPMSolverMultistepScheduler, {}),   # DPM++ 2M
    "DPMSolverMultistepScheduler-karras": (F.sdxl_pipeline, DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "UniPCMultistepScheduler": (F.sd15_pipeline, UniPCMultistepScheduler, {}),
    "LMSDiscreteScheduler": (F.sdxl_pipeline, LMSDiscreteScheduler, {}),
    "HeunDiscreteScheduler": (F.sd15_pipeline, HeunDiscreteScheduler, {}),
}


def assert_lambda_zero_is_ddim(pipe, prompt: str = "a red cat", cfg: float = 1.0) -> None:
    setting = {"cfg": cfg}
    ours = w2sd_generate(strong=(pipe, setting), weak=(pipe, setting), prompt=prompt, T=T, lam=0, seed=SEED,
                         height=F.SIZE, width=F.SIZE, output_type="latent").images
    ref = F.ddim_twin(pipe)(prompt=prompt, num_inference_steps=T, guidance_scale=cfg, latents=F.unit_noise(pipe, SEED),
                            height=F.SIZE, width=F.SIZE, output_type="latent").images
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("case", sorted(CASES))
def test_lambda_zero_is_diffusers_ddim_from_the_pipes_scheduler_config(case: str) -> None:
    build, cls, options = CASES[case]
    pipe = build()
    if cls is not None:
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **options)
    assert type(pipe.scheduler).__name__ == case.split("-")[0]
    assert_lambda_zero_is_ddim(pipe)


def test_v_prediction_lambda_zero_is_diffusers_ddim_sd21() -> None:
    pipe = F.sd_pipeline(F.SD21)  # SD2.1's own DDIM config: prediction_type v_prediction
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert_lambda_zero_is_ddim(pipe, cfg=4.0)


@pytest.mark.parametrize("options", [{"prediction_type": "sample"},
                                     {"rescale_betas_zero_snr": True, "timestep_spacing": "leading"}])
def test_sample_prediction_and_zero_terminal_snr_lambda_zero_is_diffusers_ddim(options: dict) -> None:
    pipe = F.sd_pipeline(F.SD21)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **options)
    assert_lambda_zero_is_ddim(pipe)


@pytest.mark.parametrize(("options", "names"), [
    ({"thresholding": True}, "thresholding=False"),
    ({"clip_sample": True}, "clip_sample=False"),
    ({"timestep_spacing": "linspace"}, "timestep_spacing='leading'"),
    ({"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, "timestep_spacing='leading'"),
    ({"prediction_type": "flow_prediction"}, "prediction_type='flow_prediction'"),
])
def test_unsupported_scheduler_options_fail_with_one_line_naming_option_and_fix(options: dict, names: str) -> None:
    pipe = F.sd_pipeline(F.SD21)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **options)
    with pytest.raises(ConfigError) as err:
        w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), prompt="a cat", T=T, lam=0, height=F.SIZE, width=F.SIZE)
    message = str(err.value)
    assert "\n" not in message and names in message
