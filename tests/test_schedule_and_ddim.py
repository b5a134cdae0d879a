# The schedule and the DDIM transfer agree with diffusers' DDIM schedulers and invert exactly.
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from w2sd.ddim import ddim_transfer
from w2sd.schedule import make_schedule, schedule_from_diffusers
from w2sd.validation import ConfigError

SDXL = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
            timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 50, 7])
def test_timesteps_match_diffusers_or_are_refused_off_the_ddim_chain(spacing: str, steps: int) -> None:
    config = dict(SDXL, timestep_spacing=spacing)
    ref = DDIMScheduler(**config)
    ref.set_timesteps(steps)
    ts = ref.timesteps.tolist()
    # DDIMScheduler.step lands t on t − N//T: the loop can follow it only when that is the next timestep
    on_grid = all(t - 1000 // steps == nxt for t, nxt in zip(ts, ts[1:])) and ts[-1] - 1000 // steps < 0
    if not on_grid:  # linspace; trailing with T not dividing N
        with pytest.raises(ConfigError, match="timestep_spacing"):
            schedule_from_diffusers(ref.config, steps)
        return
    ours = schedule_from_diffusers(ref.config, steps)
    assert list(ours.timesteps) == ts
    assert torch.equal(ours.alphas_cumprod.float(), ref.alphas_cumprod)


def test_paper_timesteps_sdxl_t50() -> None:
    sched = make_schedule(50)
    assert list(sched.timesteps) == [981 - 20 * i for i in range(50)]


def euler_native_config() -> dict:
    """A scheduler config with none of DDIM's own keys: DDIMScheduler.from_config fills DDIM's defaults
    (set_alpha_to_one=True, leading, steps_offset 0), not Euler's (linspace)."""
    return dict(EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).config)


@pytest.mark.parametrize("config", [SDXL, dict(SDXL, beta_schedule="squaredcos_cap_v2", set_alpha_to_one=True),
                                    dict(SDXL, trained_betas=torch.linspace(1e-4, 0.03, 1000).tolist()),
                                    dict(SDXL, rescale_betas_zero_snr=True), "euler"])
def test_ddim_step_matches_diffusers_full_loop(config) -> None:
    config = euler_native_config() if config == "euler" else config
    ref = DDIMScheduler.from_config(config, clip_sample=False)
    ref.set_timesteps(10)
    ours = schedule_from_diffusers(config, 10)
    x_ref = x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(ref.timesteps):
        eps = torch.tanh(x_ref) * 0.3 + int(t) / 4000
        x_ref = ref.step(eps, t, x_ref).prev_sample
        x = ddim_transfer(x, torch.tanh(x) * 0.3 + int(t) / 4000, ours.level(i), ours.level(i + 1))
    assert torch.allclose(x, x_ref, rtol=1e-5, atol=1e-6)


def test_transfer_there_and_back_is_identity() -> None:
    x = torch.randn(64, 2, dtype=torch.float64)
    eps = torch.randn(64, 2, dtype=torch.float64)
    back = ddim_transfer(ddim_transfer(x, eps, 0.3, 0.9), eps, 0.9, 0.3)
    assert torch.allclose(back, x, atol=1e-12)


@pytest.mark.parametrize("bad", [dict(num_steps=0), dict(num_steps=2000), dict(spacing="cosine"),
                                 dict(beta_schedule="squaredcos"), dict(beta_start=0.1, beta_end=0.01)])
def test_bad_schedule_arguments(bad: dict) -> None:
    kwargs = dict(num_steps=10) | bad
    with pytest.raises(ConfigError):
        make_schedule(kwargs.pop("num_steps"), **kwargs)
