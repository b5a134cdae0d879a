# Flux / SD3.5 / Wan2.1 through w2sd_generate on tiny pipelines from the real configs: λ = 0 is the pipeline's output.
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flow_fixtures as FF  # noqa: E402
import pipeline_fixtures as F  # noqa: E402

from w2sd.pipelines import w2sd_generate  # noqa: E402
from w2sd.pipelines.flow import euler_scheduler  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

T = 3
ATOL = 1e-4  # the bound; measured ≤ 1e-6 (the Euler step x + Δσ·v through x̂₀/ε at the latent's level)
SIZE = FF.SIZE


def generator(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# case → (builder, our setting, embeddings kind, negative embeds?, the pipeline's own keyword arguments, output)
CASES = {
    "flux_dev": (FF.flux_pipeline, {}, "flux", False, {"guidance_scale": 3.5}, "np"),
    "flux_dev_true_cfg": (FF.flux_pipeline, {"cfg": 2.0}, "flux", True, {"true_cfg_scale": 2.0}, "np"),
    "flux_schnell": (lambda: FF.flux_pipeline(repo=FF.FLUX_SCHNELL), {}, "flux", False, {}, "latent"),
    "sd35_large_cfg": (FF.sd3_pipeline, {"cfg": 5.0}, "sd3", True, {"guidance_scale": 5.0}, "np"),
    "sd35_medium_cfg1": (lambda: FF.sd3_pipeline(repo=FF.SD35_MEDIUM), {"cfg": 1.0}, "sd3", False,
                         {"guidance_scale": 1.0}, "latent"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lambda_zero_returns_the_pipelines_own_output_for_the_same_generator(case: str) -> None:
    """Images (np) or, with output_type="latent", what the pipeline returns for it (Flux: packed tokens)."""
    build, setting, kind, negative, theirs, output_type = CASES[case]
    pipe = build()
    embeds = FF.embeds(kind, negative=negative)
    ours = w2sd_generate(strong=(pipe, setting), weak=(pipe, setting), prompt_embeds=embeds, T=T, lam=0,
                         generator=generator(), height=SIZE, width=SIZE, output_type=output_type)
    ref = pipe(**embeds, **theirs, num_inference_steps=T, generator=generator(), height=SIZE, width=SIZE,
               output_type=output_type)
    assert type(ours) is type(ref)
    assert tuple(np.shape(ours.images)) == tuple(np.shape(ref.images))
    np.testing.assert_allclose(np.asarray(ours.images), np.asarray(ref.images), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_wan_lambda_zero_is_the_pipeline_with_flow_match_euler_at_its_flow_shift() -> None:
    pipe = FF.wan_pipeline()
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    twin = type(pipe).from_pipe(pipe, scheduler=euler_scheduler(pipe))
    assert twin.scheduler.config.shift == pipe.scheduler.config.flow_shift == 3.0
    twin.set_progress_bar_config(disable=True)
    embeds = FF.embeds("wan", negative=True)
    ours = w2sd_generate(strong=(pipe, {"cfg": 5.0}), weak=(pipe, {"cfg": 5.0}), prompt_embeds=embeds, T=T, lam=0,
                         generator=generator(), height=SIZE, width=SIZE, num_frames=FF.WAN_FRAMES, output_type="np")
    ref = twin(**embeds, guidance_scale=5.0, num_inference_steps=T, generator=generator(), height=SIZE, width=SIZE,
               num_frames=FF.WAN_FRAMES, output_type="np")
    assert type(ours) is type(ref) and ours.frames.shape == (1, FF.WAN_FRAMES, SIZE, SIZE, 3)
    np.testing.assert_allclose(ours.frames, ref.frames, atol=ATOL, rtol=0)
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"  # the user's pipe keeps its scheduler


class Calls:
    """Counts transformer passes and records the rows, timesteps and guidance values each pass got."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.rows, self.timesteps, self.guidance = [], [], []
        self.handle = network.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs) -> None:
        self.rows.append(kwargs["hidden_states"].shape[0])
        self.timesteps.append(float(kwargs["timestep"][0]))
        if kwargs.get("guidance") is not None:
            self.guidance.append(float(kwargs["guidance"][0]))


def test_w2sd_makes_T_plus_2_lambda_transformer_calls_and_each_leg_runs_its_own_guidance() -> None:
    pipe = FF.flux_pipeline()
    calls = Calls(pipe.transformer)
    T, lam = 4, 2
    w2sd_generate(strong=(pipe, {"guidance": 3.5}), weak=(pipe, {"guidance": 1.0}), prompt_embeds=FF.embeds("flux"),
                  T=T, lam=lam, generator=generator(), height=SIZE, width=SIZE, output_type="latent")
    assert len(calls.rows) == T + 2 * lam
    # a reflected step: strong denoise and weak inversion, both queried at the old level, then the strong step
    assert calls.guidance[:3] == [3.5, 1.0, 3.5] and sorted(set(calls.guidance)) == [1.0, 3.5]
    assert calls.timesteps[0] == calls.timesteps[1] == calls.timesteps[2]  # FluxPipeline feeds t/1000 = σ
    assert 0.99 < calls.timesteps[0] <= 1.0


def test_true_cfg_runs_two_rows_and_a_cfg_zero_leg_one() -> None:
    pipe = FF.sd3_pipeline()
    calls = Calls(pipe.transformer)
    T, lam = 4, 2
    w2sd_generate(strong=(pipe, {"cfg": 4.0}), weak=(pipe, {"cfg": 0.0}), prompt_embeds=FF.embeds("sd3", negative=True),
                  T=T, lam=lam, generator=generator(), height=SIZE, width=SIZE, output_type="latent")
    assert len(calls.rows) == T + 2 * lam
    assert sum(calls.rows) == 2 * T + lam * (2 + 1)


def test_reflection_changes_the_sample_and_the_guidance_gap_is_not_a_no_op() -> None:
    pipe = FF.flux_pipeline()
    run = {"prompt_embeds": FF.embeds("flux"), "T": T, "height": SIZE, "width": SIZE, "output_type": "latent"}
    same = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), lam=T - 1, generator=generator(), **run).images
    base = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), lam=0, generator=generator(), **run).images
    gap = w2sd_generate(strong=(pipe, {"guidance": 3.5}), weak=(pipe, {"guidance": 1.0}), lam=T - 1,
                        generator=generator(), **run).images
    # equal legs: the exact inversion undoes the strong step up to the velocity's change along it (small, not zero)
    assert 0 < (same - base).abs().max() < (gap - base).abs().max()


def test_transformer_lora_is_switched_per_leg_and_the_users_pipe_is_left_as_it_was() -> None:
    pipe = FF.flux_pipeline()
    F.add_random_lora(pipe.transformer, "style", seed=3)
    pipe.transformer.set_adapters(["style"], [0.3])  # the user's own state
    embeds = FF.embeds("flux")
    run = {**embeds, "num_inference_steps": T, "height": SIZE, "width": SIZE, "output_type": "latent"}
    before = pipe(**run, generator=generator()).images
    ours = w2sd_generate(strong=(pipe, {"lora": {"style": 0.8}}), weak=(pipe, {"lora": {"style": -1.5}}), T=T,
                         lam=0, generator=generator(), prompt_embeds=embeds, height=SIZE, width=SIZE,
                         output_type="latent").images
    w2sd_generate(strong=(pipe, {"lora": {"style": 0.8}}), weak=(pipe, {"lora": None}), T=T, lam=T - 1,
                  generator=generator(), prompt_embeds=embeds, height=SIZE, width=SIZE, output_type="latent")
    assert torch.equal(pipe(**run, generator=generator()).images, before)  # restored, bitwise
    pipe.transformer.set_adapters(["style"], [0.8])
    np.testing.assert_allclose(ours, pipe(**run, generator=generator()).images, atol=ATOL, rtol=0)
    assert (ours - before).abs().max() > 1e-3  # the LoRA scale acts


def _sd3_with_vae_scaling(factor: float):
    pipe = FF.sd3_pipeline(seed=1)
    pipe.vae.register_to_config(scaling_factor=factor)
    return pipe


BAD = {
    "guidance on a checkpoint without guidance_embeds": (
        lambda: (FF.flux_pipeline(repo=FF.FLUX_SCHNELL),) * 2, ({"guidance": 1.0}, {}), "guidance_embeds false"),
    "guidance on SD3": (lambda: (FF.sd3_pipeline(),) * 2, ({"guidance": 2.0}, {}), "no guidance embedding"),
    "guidance on a DDPM pipe": (lambda: (F.sd15_pipeline(),) * 2, ({"guidance": 2.0}, {}), "guidance embedding"),
    "flow pipe paired with a DDPM pipe": (lambda: (FF.flux_pipeline(), F.sdxl_pipeline()), ({}, {}),
                                          "is a DDPM pipeline"),
    "flux paired with sd3": (lambda: (FF.flux_pipeline(), FF.sd3_pipeline()), ({}, {}), "latent spaces differ"),
    "mismatched VAE normalisation": (lambda: (FF.sd3_pipeline(), _sd3_with_vae_scaling(0.5)), ({}, {}),
                                     "vae.scaling_factor 1.5305 vs 0.5"),
    "lam >= T": (lambda: (FF.flux_pipeline(),) * 2, ({}, {}), "must be in \\[0, 2\\]"),
    "official inversion on a flow grid": (lambda: (FF.flux_pipeline(),) * 2, ({}, {}), "inversion='official'"),
    "karras sigmas": (lambda: (FF.flux_pipeline(),) * 2, ({}, {}), "use_karras_sigmas=True is not supported"),
    "flux size off the 2x2 packing": (lambda: (FF.flux_pipeline(),) * 2, ({}, {}), "must be multiples of 4"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_flow_input_fails_with_one_line_before_any_transformer_call(case: str) -> None:
    build, (strong, weak), message = BAD[case]
    strong_pipe, weak_pipe = build()
    kind = "sd3" if "SD3" in type(strong_pipe).__name__ else "flux"
    kwargs = {"lam": 3} if case == "lam >= T" else {"lam": 1}
    kwargs |= {"inversion": "official"} if case.startswith("official") else {}
    if case == "karras sigmas":
        strong_pipe.scheduler = type(strong_pipe.scheduler).from_config(strong_pipe.scheduler.config,
                                                                        use_karras_sigmas=True)
    size = 18 if case.startswith("flux size") else SIZE
    embeds = FF.embeds(kind) if "DDPM" not in case else None
    networks = [getattr(p, "transformer", None) or p.unet for p in (strong_pipe, weak_pipe)]
    counters = [Calls(n) if hasattr(n.config, "guidance_embeds") or "SD3" in type(n).__name__ else None
                for n in networks]
    with pytest.raises(ConfigError, match=message) as info:
        w2sd_generate(strong=(strong_pipe, strong), weak=(weak_pipe, weak), prompt="a cat" if embeds is None else None,
                      prompt_embeds=embeds, T=T, generator=generator(), height=size, width=size,
                      output_type="latent", **kwargs)
    assert "\n" not in str(info.value)
    assert all(c is None or not c.rows for c in counters)


def test_bf16_flux_runs_the_transformer_in_bf16_and_stays_within_bf16_rounding_of_diffusers() -> None:
    pipe = FF.flux_pipeline().to(torch.bfloat16)
    seen = []
    pipe.transformer.register_forward_pre_hook(lambda m, a, k: seen.append(k["hidden_states"].dtype),
                                               with_kwargs=True)
    embeds = {k: v.to(torch.bfloat16) for k, v in FF.embeds("flux").items()}
    ours = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), prompt_embeds=embeds, T=T, lam=0, generator=generator(),
                         height=SIZE, width=SIZE, output_type="np").images
    ref = pipe(**embeds, num_inference_steps=T, generator=generator(), height=SIZE, width=SIZE,
               output_type="np").images
    assert set(seen) == {torch.bfloat16}
    assert np.abs(ours - ref).max() < 0.05  # diffusers keeps bf16 latents between steps, we keep float32


def test_model_cpu_offload_gives_the_same_samples_and_progress_bar_counts_steps(capfd) -> None:
    plain, offloaded = FF.flux_pipeline(), FF.flux_pipeline()
    offloaded.enable_model_cpu_offload(device="cpu")
    offloaded.set_progress_bar_config(disable=False)
    run = {"prompt_embeds": FF.embeds("flux"), "T": T, "lam": 1, "height": SIZE, "width": SIZE,
           "output_type": "latent"}
    a = w2sd_generate(strong=(plain, {}), weak=(plain, {"guidance": 1.0}), generator=generator(), **run).images
    capfd.readouterr()
    b = w2sd_generate(strong=(offloaded, {}), weak=(offloaded, {"guidance": 1.0}), generator=generator(), **run).images
    assert f"{T}/{T}" in capfd.readouterr().err
    assert torch.equal(a, b)


def test_flux_latents_argument_is_the_packed_x_T_the_pipeline_takes() -> None:
    pipe = FF.flux_pipeline()
    run = {"prompt_embeds": FF.embeds("flux"), "T": T, "lam": 0, "height": SIZE, "width": SIZE,
           "output_type": "latent"}
    drawn = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), seed=5, **run).images
    noise = torch.randn((1, 16, SIZE // 2, SIZE // 2), generator=torch.Generator().manual_seed(5))
    packed = type(pipe)._pack_latents(noise, 1, 16, SIZE // 2, SIZE // 2)
    given = w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), seed=5, latents=packed, **run).images
    assert torch.equal(drawn, given)
    with pytest.raises(ConfigError, match="latents have shape"):
        w2sd_generate(strong=(pipe, {}), weak=(pipe, {}), seed=5, latents=noise, **run)


def test_prompt_gap_encodes_each_legs_prompt_with_the_pipelines_own_text_encoders() -> None:
    from w2sd.methods import resolve_method
    from w2sd.pipelines import ModelSetting
    from w2sd.pipelines.generation import Batch, GenerationConfig, generate

    pipe = FF.flux_pipeline(text=True)
    settings = {"strong": ModelSetting(prompt="refined"), "weak": ModelSetting(prompt="raw")}
    batch = Batch(prompts=("a cat",), refined=("a fluffy cat, studio light",))
    config = GenerationConfig(T=T, height=SIZE, width=SIZE, output_type="latent")
    for name, text in (("strong", batch.refined[0]), ("weak", batch.prompts[0])):
        method = resolve_method(name, {"sampler": "ddim", "model": name}, {}, settings, T)
        ours = generate(method, {name: (pipe, settings[name])}, batch, config, generator=generator()).output
        ref = pipe(text, num_inference_steps=T, generator=generator(), height=SIZE, width=SIZE, output_type="latent")
        np.testing.assert_allclose(ours.images, ref.images, atol=ATOL, rtol=0)
