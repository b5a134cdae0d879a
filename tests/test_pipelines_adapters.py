# Adapters on tiny random pipelines: λ = 0 equals the diffusers pipeline; CFG, LoRA, IP-Adapter, MoE, inversion.
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402

from w2sd.ddim import ddim_transfer  # noqa: E402
from w2sd.pipelines import ModelSetting, PipelineDenoiser, w2sd_generate  # noqa: E402
from w2sd.pipelines.encoding import encode  # noqa: E402
from w2sd.pipelines.latents import initial_noise, latent_shape  # noqa: E402
from w2sd.pipelines.loading import load_pipeline  # noqa: E402
from w2sd.pipelines.moe import MoEFeedForward, set_routing  # noqa: E402
from w2sd.pipelines.state import Switch  # noqa: E402
from w2sd.sampling import sample_w2sd  # noqa: E402
from w2sd.schedule import schedule_from_diffusers  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

T = 3
# float32 rounding only: our DDIM coefficients come from a float64 ā table, the scheduler's from float32
EXACT_ATOL = 1e-5


def edge_image() -> Image.Image:
    return Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8))


CASES = {
    "sd15": (F.sd15_pipeline, 5.5, {}),
    "sdxl": (F.sdxl_pipeline, 5.5, {}),
    "sdxl_cfg1": (F.sdxl_pipeline, 1.0, {}),
    "controlnet": (F.controlnet_pipeline, 5.5, {"control": True}),
    "ip_adapter_sd15": (F.ip_adapter_pipeline, 5.5, {"ip_adapter": 0.7}),
    "ip_adapter_sdxl": (lambda: F.ip_adapter_pipeline(F.sdxl_pipeline), 5.5, {"ip_adapter": 0.7}),
    "dit_moe": (F.dit_moe_pipeline, 1.5, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lambda_zero_reproduces_the_diffusers_pipeline(case: str) -> None:
    build, cfg, opts = CASES[case]
    pipe = build()
    setting = {"cfg": cfg, "control_scale": 1.0 if opts.get("control") else 0.0,
               "ip_adapter_scale": opts.get("ip_adapter", 0.0)}
    kwargs = {"control_image": edge_image()} if opts.get("control") else {}
    if opts.get("ip_adapter"):
        kwargs = {"ip_adapter_image": edge_image()}
    prompt = "1" if case == "dit_moe" else "a red cat"
    ours = w2sd_generate(strong=(pipe, setting), weak=(pipe, setting), prompt=prompt, T=T, lam=0, seed=7,
                         height=32, width=32, output_type="np", **kwargs)
    if case == "dit_moe":  # DiTPipeline draws x_T from one generator, which equals our per-sample draw
        ref = pipe(class_labels=[1], num_inference_steps=T, guidance_scale=cfg,
                   generator=torch.Generator().manual_seed(7), output_type="np")
    else:
        x, _ = initial_noise(pipe, [7], latent_shape(pipe, 32, 32))
        extra = {"image": kwargs["control_image"]} if opts.get("control") else {}
        if opts.get("ip_adapter"):
            pipe.set_ip_adapter_scale(opts["ip_adapter"])
            extra = kwargs
        ref = F.ddim_twin(pipe)(prompt=prompt, num_inference_steps=T, guidance_scale=cfg, latents=x, height=32,
                                width=32, output_type="np", **extra)
    assert type(ours) is type(ref)
    np.testing.assert_allclose(ours.images, ref.images, atol=EXACT_ATOL, rtol=0)


@pytest.mark.slow
def test_lambda_zero_reproduces_the_animatediff_sdxl_pipeline() -> None:
    pipe = F.animatediff_sdxl_pipeline()
    x, _ = initial_noise(pipe, [7], latent_shape(pipe, 32, 32, num_frames=2))
    ours = w2sd_generate(strong=(pipe, {"cfg": 3.0}), weak=(pipe, {"cfg": 3.0}), prompt="a cat", T=2, lam=0, seed=7,
                         height=32, width=32, num_frames=2, output_type="np")
    ref = F.ddim_twin(pipe)(prompt="a cat", num_inference_steps=2, guidance_scale=3.0, latents=x, height=32,
                            width=32, num_frames=2, output_type="np")
    np.testing.assert_allclose(np.asarray(ours.frames), np.asarray(ref.frames), atol=EXACT_ATOL, rtol=0)


def rows_counter(module: torch.nn.Module) -> list[int]:
    rows: list[int] = []
    module.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    return rows


def denoiser(pipe, setting: ModelSetting, prompts=("a cat", "a dog")) -> PipelineDenoiser:
    return PipelineDenoiser(pipe, setting, encode(pipe, setting, list(prompts), height=32, width=32))


def test_cfg_runs_one_branch_at_scale_one_and_zero_and_combines_otherwise() -> None:
    pipe = F.sd15_pipeline()
    rows = rows_counter(pipe.unet)
    x = torch.randn(2, 4, 16, 16)
    eps = {w: denoiser(pipe, ModelSetting(cfg=w))(x, 501) for w in (1.0, 0.0, 5.5, -2.0, 12.0)}
    assert rows == [2, 2, 4, 4, 4]  # batch 2: single-branch passes at 1 and 0, batch-2 CFG otherwise
    for w in (5.5, -2.0, 12.0):
        torch.testing.assert_close(eps[w], eps[0.0] + w * (eps[1.0] - eps[0.0]), atol=2e-5, rtol=1e-4)


def test_lora_pair_shares_one_unet_and_switching_matches_set_adapters() -> None:
    pipe, plain = F.sdxl_pipeline(), F.sdxl_pipeline()
    F.add_random_lora(pipe.unet, "style", seed=3)
    x = torch.randn(1, 4, 16, 16)
    strong = denoiser(pipe, ModelSetting(cfg=5.5, lora={"style": 0.8}), ["a cat"])
    weak = denoiser(pipe, ModelSetting(cfg=5.5, lora={"style": -1.5}), ["a cat"])
    off = denoiser(pipe, ModelSetting(cfg=5.5, lora=None), ["a cat"])
    e_strong, e_weak, e_off = strong(x, 501), weak(x, 501), off(x, 501)
    assert strong.network is weak.network
    assert (e_strong - e_weak).abs().max() > 1e-3
    torch.testing.assert_close(e_off, denoiser(plain, ModelSetting(cfg=5.5), ["a cat"])(x, 501))
    pipe.unet.set_adapters(["style"], [0.3])  # diffusers' own switch in between: ours must not trust a stale cache
    torch.testing.assert_close(off(x, 501), e_off)
    torch.testing.assert_close(weak(x, 501), e_weak)
    torch.testing.assert_close(strong(x, 501), e_strong)


def test_ip_adapter_scale_switches_one_unet_and_scale_zero_is_the_plain_pipeline(monkeypatch) -> None:
    pipe, plain = F.ip_adapter_pipeline(), F.sd15_pipeline()
    switches = []
    set_scale = pipe.set_ip_adapter_scale
    monkeypatch.setattr(pipe, "set_ip_adapter_scale", lambda scale: (switches.append(scale), set_scale(scale)))
    x = torch.randn(1, 4, 16, 16)
    settings = {"strong": ModelSetting(cfg=5.5, ip_adapter_scale=0.8), "weak": ModelSetting(cfg=5.5)}
    switch = Switch()  # one call's switch, shared by its legs
    models = {name: PipelineDenoiser(pipe, s, encode(pipe, s, ["a cat"], height=32, width=32,
                                                     ip_adapter_images=[edge_image()]), switch=switch)
              for name, s in settings.items()}
    e_strong, e_strong_again, e_weak = models["strong"](x, 501), models["strong"](x, 501), models["weak"](x, 501)
    assert models["strong"].network is models["weak"].network
    assert (e_strong - e_weak).abs().max() > 1e-3
    torch.testing.assert_close(e_weak, denoiser(plain, ModelSetting(cfg=5.5), ["a cat"])(x, 501))
    torch.testing.assert_close(models["strong"](x, 501), e_strong)  # restored after the weak call
    assert switches == [0.8, 0.0, 0.8]  # set only when it changes (the repeated strong call did not)
    torch.testing.assert_close(e_strong_again, e_strong)


def test_moe_routing_uses_top_or_bottom_experts() -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(16, num_experts=8, k=2)
    h = torch.randn(5, 16)
    for route, largest in (("top", True), ("bottom", False)):
        set_routing(layer, route, 2)
        logits = layer.router(h)
        idx = logits.topk(2, dim=-1, largest=largest).indices
        w = torch.softmax(logits.gather(-1, idx), -1)
        expected = torch.stack([sum(w[r, j] * layer.experts[int(idx[r, j])](h[r:r + 1])[0] for j in range(2))
                                for r in range(5)])
        torch.testing.assert_close(layer(h), expected, atol=1e-6, rtol=1e-5)
    pipe = F.dit_moe_pipeline()
    x = torch.randn(1, 4, 16, 16)
    top = denoiser(pipe, ModelSetting(cfg=1.5, moe=("top", 2)), ["1"])(x, 501)
    bottom = denoiser(pipe, ModelSetting(cfg=1.5, moe=("bottom", 2)), ["1"])(x, 501)
    assert (top - bottom).abs().max() > 1e-3


def test_weak_equals_strong_exact_inversion_moves_latents_only_by_the_inversion_error() -> None:
    """With one model, the exact reflection returns x_t + c_i·(ε(x', t_i) − ε(x_t, t_i)) where x' is the advanced
    latent and c_i = √(1−ā_i) − √(ā_i/ā_{i+1})·√(1−ā_{i+1}) (paper Eq. 14–16 with Δ1 = 0): the bound checked here,
    per step, is |x̃ − x| ≤ |c_i|·max|ε(x') − ε(x)| + 1e-5."""
    pipe = F.sd15_pipeline()
    model = denoiser(pipe, ModelSetting(cfg=1.0), ["a cat"])
    schedule = schedule_from_diffusers(dict(pipe.scheduler.config), 5)
    x_T, _ = initial_noise(pipe, [0], latent_shape(pipe, 32, 32))
    starts, steps = [x_T], []
    sample_w2sd(model, model, x_T, schedule, inversion="exact",
                callback=lambda s: (steps.append(s), starts.append(s["x"])))
    worst = 0.0
    for i, step in enumerate(steps[:-1]):
        x, a, b = starts[i], schedule.level_alpha_bar(i), schedule.level_alpha_bar(i + 1)
        e_x = model(x, schedule.timesteps[i])
        e_adv = model(ddim_transfer(x, e_x, schedule.level(i), schedule.level(i + 1)), schedule.timesteps[i])
        c = abs((1 - a) ** 0.5 - (a / b) ** 0.5 * (1 - b) ** 0.5)
        moved = (step["x_reflected"] - x).abs().max().item()
        assert moved <= c * (e_adv - e_x).abs().max().item() + 1e-5
        worst = max(worst, moved)
    assert 0 < worst < 0.2 * x_T.abs().max().item()  # and it is small next to the latent itself


def test_entry_returns_the_pipeline_output_type_for_a_lora_pair() -> None:
    pipe = F.sd15_pipeline()
    F.add_random_lora(pipe.unet, "art", seed=1)
    out = w2sd_generate(strong=(pipe, {"lora": {"art": 0.8}, "cfg": 1.0}), weak=(pipe, {"lora": {"art": -1.5},
                        "cfg": 1.0}), final=(pipe, {"lora": {"art": 0.8}, "cfg": 5.5}), prompt=["a cat", "a dog"],
                        T=T, seed=0, height=32, width=32)
    assert type(out).__name__ == "StableDiffusionPipelineOutput" and len(out.images) == 2
    assert isinstance(out.images[0], Image.Image) and out.images[0].size == (32, 32)


def test_bad_settings_fail_with_one_clear_line() -> None:
    pipe, cn, ip = F.sd15_pipeline(), F.controlnet_pipeline(), F.ip_adapter_pipeline()
    cases = [(pipe, ModelSetting(lora={"missing": 0.8}), "LoRA adapter\\(s\\) \\['missing'\\] are not loaded"),
             (pipe, ModelSetting(ip_adapter_scale=0.5), "ip_adapter_scale=0.5 needs an IP-Adapter"),
             (ip, ModelSetting(), "has an IP-Adapter but no IP-Adapter image was given"),
             (pipe, ModelSetting(control_scale=1.0), "needs a ControlNet pipeline"),
             (cn, ModelSetting(control_scale=1.0), "no control image was given"),
             (pipe, ModelSetting(moe=("top", 2)), "moe routing needs MoE layers")]
    for p, setting, message in cases:
        cond = encode(p, ModelSetting(), ["a cat"], height=32, width=32)
        with pytest.raises(ConfigError, match=message) as info:
            PipelineDenoiser(p, setting, cond)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="has no IP-Adapter with an image encoder"):
        encode(pipe, ModelSetting(), ["a cat"], height=32, width=32, ip_adapter_images=[edge_image()])


def test_missing_weights_fail_fast_offline_naming_id_place_and_fix(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_pipeline("gap.models.strong", {"pipeline": "StableDiffusionXLPipeline", "id": "acme/never-cached"})
    message = str(info.value)
    assert time.perf_counter() - start < 5 and "\n" not in message
    assert "'acme/never-cached'" in message and "HF cache" in message and "gap.models.strong.path=" in message
    with pytest.raises(ConfigError, match="is not a diffusers pipeline class"):
        load_pipeline("m", {"pipeline": "NoSuchPipeline", "id": "x/y"})


def test_adaptive_reflection_keeps_each_prompt_with_its_sample() -> None:
    """Adaptive reflection drops samples from the legs' batch; every kept sample must stay with its own prompt. The
    reference is each prompt sampled alone (batch 1), where no row can be mixed up."""
    pipe = F.sd15_pipeline()
    prompts = ["a cat", "a red dog", "a blue car"]
    strong_setting, weak_setting = ModelSetting(cfg=5.5), ModelSetting(cfg=1.0)
    schedule = schedule_from_diffusers(dict(pipe.scheduler.config), 4)
    x = torch.stack([F.unit_noise(pipe, seed)[0] for seed in range(3)])

    def run(index: list[int], threshold) -> torch.Tensor:
        chosen = [prompts[i] for i in index]
        return sample_w2sd(denoiser(pipe, strong_setting, chosen), denoiser(pipe, weak_setting, chosen), x[index],
                           schedule, threshold=threshold).x

    # per-level thresholds between the samples' first reflection displacements, so some stop and others go on
    full = [run([i], 0.0) for i in range(3)]
    moved = []
    for i in range(3):
        trace: list[dict] = []
        sample_w2sd(denoiser(pipe, strong_setting, [prompts[i]]), denoiser(pipe, weak_setting, [prompts[i]]), x[[i]],
                    schedule, callback=trace.append)
        moved.append(float((trace[0]["x_reflected"] - x[[i]]).pow(2).mean().sqrt()))
    tau = sorted(moved)[1]  # the middle sample's displacement: at least one stops after level 0, one goes on
    batched = run([0, 1, 2], [tau] * 4)
    alone = torch.cat([run([i], [tau] * 4) for i in range(3)])
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)
    stopped = [i for i in range(3) if moved[i] <= tau]
    assert stopped and len(stopped) < 3
    assert not torch.allclose(alone[stopped[0]], full[stopped[0]][0], atol=1e-3)  # stopping changed that sample
