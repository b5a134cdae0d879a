# w2sd_generate called as a diffusers pipeline is called: references are diffusers' own pipelines at λ = 0.
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402

from w2sd.pipelines import ModelSetting, w2sd_generate  # noqa: E402
from w2sd.pipelines.encoding import encode  # noqa: E402
from w2sd.pipelines.latents import initial_noise, latent_shape  # noqa: E402
from w2sd.pipelines.moe import moe_layers  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

T = 3
EXACT_ATOL = 1e-5  # float32 rounding of the DDIM coefficients (see test_pipelines_adapters)
CFG = {"cfg": 5.5}


def plain(pipe, **kwargs):
    """λ = 0: the DDIM pipeline, so diffusers' own __call__ is the reference."""
    return w2sd_generate(strong=(pipe, CFG), weak=(pipe, CFG), T=T, lam=0, height=32, width=32, **kwargs)


def reference(pipe, **kwargs):
    """diffusers' own pipeline with DDIMScheduler.from_config of the pipe's scheduler (what λ = 0 equals)."""
    return F.ddim_twin(pipe)(num_inference_steps=T, guidance_scale=CFG["cfg"], height=32, width=32, **kwargs)


def test_output_type_latent_returns_the_undecoded_latents() -> None:
    pipe = F.sd15_pipeline()
    latent = plain(pipe, prompt=["a cat", "a dog"], output_type="latent").images
    assert isinstance(latent, torch.Tensor) and latent.shape == (2, 4, 16, 16)
    with torch.no_grad():
        decoded = pipe.vae.decode(latent / pipe.vae.config.scaling_factor, return_dict=False)[0]
    expected = pipe.image_processor.postprocess(decoded, output_type="np")
    np.testing.assert_allclose(plain(pipe, prompt=["a cat", "a dog"], output_type="np").images, expected,
                               atol=1e-6, rtol=0)


def test_generators_behave_as_in_diffusers() -> None:
    pipe = F.sd15_pipeline()
    prompts = ["a cat", "a dog"]
    one = plain(pipe, prompt=prompts, generator=torch.Generator().manual_seed(5), output_type="np").images
    again = plain(pipe, prompt=prompts, generator=torch.Generator().manual_seed(5), output_type="np").images
    np.testing.assert_array_equal(one, again)
    ref = reference(pipe, prompt=prompts, generator=torch.Generator().manual_seed(5), output_type="np").images
    np.testing.assert_allclose(one, ref, atol=EXACT_ATOL, rtol=0)
    listed = plain(pipe, prompt=prompts, output_type="np",
                   generator=[torch.Generator().manual_seed(s) for s in (3, 4)]).images
    ref = reference(pipe, prompt=prompts, output_type="np",
                    generator=[torch.Generator().manual_seed(s) for s in (3, 4)]).images
    np.testing.assert_allclose(listed, ref, atol=EXACT_ATOL, rtol=0)
    alone = plain(pipe, prompt="a dog", generator=[torch.Generator().manual_seed(4)], output_type="np").images
    np.testing.assert_allclose(alone[0], listed[1], atol=EXACT_ATOL, rtol=0)  # a list: per-image generators
    with pytest.raises(ConfigError, match="both seed and generator") as info:
        plain(pipe, prompt="a cat", seed=1, generator=torch.Generator())
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="list of 1 for 2 images"):
        plain(pipe, prompt=prompts, generator=[torch.Generator()])


def test_latents_and_num_images_per_prompt_and_str_negative_prompt_match_diffusers() -> None:
    pipe = F.sd15_pipeline()
    x, _ = initial_noise(pipe, [1, 2, 3, 4], latent_shape(pipe, 32, 32))
    kwargs = {"prompt": ["a cat", "a dog"], "negative_prompt": "blurry", "num_images_per_prompt": 2,
              "latents": x, "output_type": "np"}
    ours = plain(pipe, **kwargs).images
    ref = reference(pipe, **{**kwargs, "negative_prompt": ["blurry"] * 2}).images  # diffusers: a str needs a str prompt
    np.testing.assert_allclose(ours, ref, atol=EXACT_ATOL, rtol=0)
    assert np.abs(ours - plain(pipe, **{**kwargs, "negative_prompt": None}).images).max() > 1e-3
    with pytest.raises(ConfigError, match="latents have shape"):
        plain(pipe, prompt="a cat", latents=x)


def test_return_dict_false_gives_the_output_tuple() -> None:
    pipe = F.sd15_pipeline()
    out = plain(pipe, prompt="a cat", output_type="np", return_dict=False)
    assert isinstance(out, tuple)
    np.testing.assert_array_equal(out[0], plain(pipe, prompt="a cat", output_type="np").images)


def test_progress_bar_follows_set_progress_bar_config(capfd) -> None:
    pipe = F.sd15_pipeline()
    pipe.set_progress_bar_config(disable=False)
    plain(pipe, prompt="a cat", output_type="latent")
    assert f"{T}/{T}" in capfd.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    plain(pipe, prompt="a cat", output_type="latent")
    assert capfd.readouterr().err == ""


def test_callback_on_step_end_sees_and_replaces_latents_as_in_diffusers() -> None:
    pipe = F.sd15_pipeline()
    x, _ = initial_noise(pipe, [0], latent_shape(pipe, 32, 32))
    calls: dict[str, list] = {"ours": [], "ref": []}

    def callback(who):
        def on_step(p, i, t, kwargs):
            calls[who].append((i, int(t), tuple(kwargs["latents"].shape)))
            return {"latents": kwargs["latents"] * 0.5} if i == 1 else kwargs
        return on_step

    ours = plain(pipe, prompt="a cat", latents=x, output_type="np", callback_on_step_end=callback("ours"))
    ref = reference(pipe, prompt="a cat", latents=x, output_type="np", callback_on_step_end=callback("ref"))
    assert calls["ours"] == calls["ref"] and len(calls["ours"]) == T
    np.testing.assert_allclose(ours.images, ref.images, atol=EXACT_ATOL, rtol=0)
    untouched = plain(pipe, prompt="a cat", latents=x, output_type="np")
    assert np.abs(untouched.images - ours.images).max() > 1e-2  # the halving took effect
    with pytest.raises(ConfigError, match="not available"):
        plain(pipe, prompt="a cat", callback_on_step_end=callback("ours"),
              callback_on_step_end_tensor_inputs=["prompt_embeds"])


class FlagEverything(torch.nn.Module):
    """A safety checker that flags every image (the real one needs CLIP weights); diffusers blackens flagged ones."""

    device, dtype = torch.device("cpu"), torch.float32  # read by diffusers' pipeline device / dtype lookup

    def forward(self, images, clip_input):
        return (torch.zeros_like if torch.is_tensor(images) else np.zeros_like)(images), [True] * len(images)


def test_the_pipelines_safety_checker_runs_and_can_be_switched_off() -> None:
    from transformers import CLIPImageProcessor

    pipe = F.sd15_pipeline()
    pipe.register_modules(safety_checker=FlagEverything(), feature_extractor=CLIPImageProcessor(size=8, crop_size=8))
    out = plain(pipe, prompt="a cat", output_type="np")
    ref = reference(pipe, prompt="a cat", output_type="np", latents=initial_noise(pipe, [0], (4, 16, 16))[0])
    assert out.nsfw_content_detected == ref.nsfw_content_detected == [True]
    assert out.images.max() == ref.images.max() == 0
    pipe.safety_checker = None
    out = plain(pipe, prompt="a cat", output_type="pil")
    assert out.nsfw_content_detected is None and np.asarray(out.images[0]).max() > 0


class CornerMark:
    """A watermarker with diffusers' interface (the real one needs the invisible-watermark package): it sets the
    top-left 4×4 pixels of every image to white."""

    def apply_watermark(self, images: torch.Tensor) -> torch.Tensor:
        marked = images.clone()
        marked[:, :, :4, :4] = 1.0
        return marked


def test_the_sdxl_watermarker_is_applied_as_in_diffusers() -> None:
    pipe = F.sdxl_pipeline()
    twin = F.ddim_twin(pipe)
    pipe.watermark = twin.watermark = CornerMark()
    x, _ = initial_noise(pipe, [2], latent_shape(pipe, 32, 32))
    kwargs = {"prompt": "a cat", "latents": x, "output_type": "np"}
    ours = plain(pipe, **kwargs).images
    ref = twin(num_inference_steps=T, guidance_scale=CFG["cfg"], height=32, width=32, **kwargs).images
    np.testing.assert_allclose(ours, ref, atol=EXACT_ATOL, rtol=0)
    assert (ours[:, :4, :4] == 1.0).all() and (ours[:, 4:, 4:] < 1.0).any()


def test_prompt_encoding_runs_without_autograd() -> None:
    pipe = F.sd15_pipeline()
    cond = encode(pipe, ModelSetting(cfg=5.5), ["a cat"], height=32, width=32)
    assert cond.cond["encoder_hidden_states"].is_inference()


def lora_pipe():
    pipe = F.sdxl_pipeline()
    F.add_random_lora(pipe.unet, "style", seed=3)
    return pipe


LEGS = {"strong": {"lora": {"style": 0.8}, "cfg": 1.0}, "weak": {"lora": {"style": -1.5}, "cfg": 1.0},
        "final": {"lora": {"style": 0.8}, "cfg": 5.5}}


def user_call(pipe, x) -> np.ndarray:
    return pipe(prompt="a cat", latents=x, num_inference_steps=2, height=32, width=32, output_type="np").images


def test_the_users_pipe_is_left_exactly_as_it_was_also_after_an_error() -> None:
    pipe = lora_pipe()
    x, _ = initial_noise(pipe, [0], latent_shape(pipe, 32, 32))
    legs = {role: (pipe, s) for role, s in LEGS.items()}
    for scale in (0.3, -0.7):  # the user switches scales between our calls: no stale cache may survive
        pipe.set_adapters(["style"], [scale])
        before = user_call(pipe, x)
        w2sd_generate(**legs, prompt="a cat", T=T, height=32, width=32, output_type="latent")
        np.testing.assert_array_equal(user_call(pipe, x), before)

    def fail(p, i, t, kwargs):
        raise RuntimeError("stop")

    pipe.disable_lora()
    before = user_call(pipe, x)
    with pytest.raises(RuntimeError, match="stop"):
        w2sd_generate(**legs, prompt="a cat", T=T, height=32, width=32, callback_on_step_end=fail)
    np.testing.assert_array_equal(user_call(pipe, x), before)


def test_text_encoder_lora_is_switched_per_leg_and_restored(tmp_path: Path) -> None:
    """A LoRA on the UNet and both text encoders: each leg encodes its prompt under its own scale (reference:
    diffusers' pipeline after set_adapters, which scales the text encoders too), and the user's scale comes back."""
    pipe = F.sdxl_pipeline()
    F.load_sdxl_lora_with_text_encoders(pipe, "style", tmp_path)
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder", "text_encoder_2"}
    x, _ = initial_noise(pipe, [0], latent_shape(pipe, 32, 32))
    twin = F.ddim_twin(pipe)  # shares the networks, so set_adapters below reaches both
    kwargs = {"prompt": "a cat", "latents": x, "output_type": "np"}
    results = {}
    for scale in (0.8, -1.5):
        pipe.set_adapters(["style"], [scale])
        ref = twin(num_inference_steps=T, guidance_scale=CFG["cfg"], height=32, width=32, **kwargs).images
        pipe.set_adapters(["style"], [0.3])  # the user's state: ours must set the leg's scale itself
        results[scale] = plain_with(pipe, {"cfg": CFG["cfg"], "lora": {"style": scale}}, **kwargs).images
        np.testing.assert_allclose(results[scale], ref, atol=EXACT_ATOL, rtol=0)
    assert np.abs(results[0.8] - results[-1.5]).max() > 1e-3
    with torch.no_grad():
        ids = torch.arange(8)[None]
        user = [pipe.text_encoder(ids)[0], pipe.text_encoder_2(ids)[0]]
        pipe.set_adapters(["style"], [0.0])
        off = [pipe.text_encoder(ids)[0], pipe.text_encoder_2(ids)[0]]
        pipe.set_adapters(["style"], [0.3])
        again = [pipe.text_encoder(ids)[0], pipe.text_encoder_2(ids)[0]]
    assert all(torch.equal(a, b) for a, b in zip(user, again))  # left at the user's 0.3, not at a leg's scale
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(user, off))  # and the text-encoder LoRA does act


def plain_with(pipe, setting: dict, **kwargs):
    return w2sd_generate(strong=(pipe, setting), weak=(pipe, setting), T=T, lam=0, height=32, width=32, **kwargs)


def test_ip_adapter_scale_and_moe_routing_are_restored() -> None:
    ip = F.ip_adapter_pipeline()
    ip.set_ip_adapter_scale(0.3)
    image = Image.fromarray(np.full((32, 32, 3), 128, np.uint8))
    w2sd_generate(strong=(ip, {"ip_adapter_scale": 0.9}), weak=(ip, {}), prompt="a cat", T=T, height=32, width=32,
                  ip_adapter_image=image, output_type="latent")
    assert {tuple(p.scale) for p in ip.unet.attn_processors.values() if hasattr(p, "to_k_ip")} == {(0.3,)}
    dit = F.dit_moe_pipeline()
    w2sd_generate(strong=(dit, {"cfg": 1.5, "moe": {"route": "top", "k": 2}}),
                  weak=(dit, {"cfg": 1.5, "moe": {"route": "bottom", "k": 3}}), prompt="1", T=T, output_type="latent")
    assert {(m.route, m.k) for m in moe_layers(dit.transformer)} == {("top", 2)}  # as install_moe left it


def test_any_method_runs_through_the_entry_point() -> None:
    pipe = F.sd15_pipeline()
    strong, weak = (pipe, {"cfg": 5.5}), (pipe, {"cfg": 1.0})
    guided = w2sd_generate(strong, weak, "a cat", T=T, method={"sampler": "autoguidance", "w": 1.0},
                           output_type="latent").images
    assert guided.shape == (1, 4, 16, 16)
    zero = w2sd_generate(strong, weak, "a cat", T=T, method={"sampler": "autoguidance", "w": 0.0},
                         output_type="latent").images
    ddim = w2sd_generate(strong, weak, "a cat", T=T, method="ddim", output_type="latent").images
    torch.testing.assert_close(zero, ddim)  # w = 0 is the strong model alone
    assert (guided - ddim).abs().max() > 1e-3
