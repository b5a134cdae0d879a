# The schedule and the DDIM transfer agree with diffusers' DDIM schedulers and invert exactly.
import math
import re

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from w2sd.ddim import VPLevel, ddim_transfer, from_x0, predict_x0, renoise
from w2sd.schedule import FIX, make_schedule, schedule_from_diffusers
from w2sd.theory import reflection_coefficient
from w2sd.validation import ConfigError

V = VPLevel.from_alpha_bar  # a VP level from ā
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
    assert ours.final_alpha_cumprod == pytest.approx(float(ref.final_alpha_cumprod), rel=1e-6)
    assert ours.step_ratio == 1000 // steps


def test_an_empty_config_means_diffusers_defaults() -> None:
    ref = DDIMScheduler()
    ref.set_timesteps(10)
    ours = schedule_from_diffusers({}, 10)
    assert list(ours.timesteps) == ref.timesteps.tolist() and ours.final_alpha_cumprod == 1.0
    assert torch.allclose(ours.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-6)


def test_levels_and_sigmas_by_hand() -> None:
    sched = make_schedule(4, beta_schedule="linear", beta_start=0.1, beta_end=0.4, num_train_timesteps=4,
                          spacing="trailing", steps_offset=0, set_alpha_to_one=False)
    a = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7, 0.9 * 0.8 * 0.7 * 0.6]  # betas 0.1, 0.2, 0.3, 0.4
    assert sched.timesteps == (3, 2, 1, 0)
    assert [sched.level_alpha_bar(i) for i in range(5)] == pytest.approx([a[3], a[2], a[1], a[0], a[0]], rel=1e-12)
    assert sched.alpha_bar(-1) == sched.final_alpha_cumprod == pytest.approx(0.9, rel=1e-12)
    assert sched.sigma(1) == pytest.approx(math.sqrt((1 - a[2]) / a[2]), rel=1e-12)
    assert sched.num_steps == 4 and sched.num_train_timesteps == 4


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


def test_transfer_pieces_by_hand() -> None:
    x, eps = torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    x0 = predict_x0(x, eps, V(0.64))  # (2 − 0.6·1)/0.8
    assert x0.item() == pytest.approx(1.75, rel=1e-15)
    assert from_x0(x0, eps, V(0.36)).item() == pytest.approx(0.6 * 1.75 + 0.8, rel=1e-15)
    assert ddim_transfer(x, eps, V(0.64), V(0.36)).item() == pytest.approx(0.6 * 1.75 + 0.8, rel=1e-15)
    assert renoise(x, eps, V(0.8), V(0.2)).item() == pytest.approx(0.5 * 2 + math.sqrt(0.75), rel=1e-15)


def test_reflection_coefficient_by_hand() -> None:
    """C = ā·σ_t·(σ_t − σ_next): ā = 0.5 gives σ_t = 1, ā_next = 0.8 gives σ_next = 0.5, so C = 0.25."""
    assert reflection_coefficient(V(0.5), V(0.8)) == pytest.approx(0.25, rel=1e-15)
    assert reflection_coefficient(V(0.2), V(0.5)) == pytest.approx(0.2 * 2 * (2 - 1), rel=1e-15)


def test_transfer_there_and_back_is_identity() -> None:
    x = torch.randn(64, 2, dtype=torch.float64)
    eps = torch.randn(64, 2, dtype=torch.float64)
    back = ddim_transfer(ddim_transfer(x, eps, V(0.3), V(0.9)), eps, V(0.9), V(0.3))
    assert torch.allclose(back, x, atol=1e-12)


@pytest.mark.parametrize("bad, message", [
    (dict(num_steps=0), "num_steps=0 must be a positive integer"),
    (dict(num_steps=2.5), "num_steps=2.5 must be a positive integer"),
    (dict(num_steps=1001), "num_steps=1001 exceeds num_train_timesteps=1000"),
    (dict(spacing="cosine"), "spacing='cosine' is not supported"),
    (dict(beta_schedule="squaredcos"), "beta_schedule='squaredcos' is not supported"),
    (dict(beta_start=0.1, beta_end=0.01), "0 < beta_start < beta_end < 1, got 0.1, 0.01"),
    (dict(beta_start=0.0), "got 0.0, 0.012"),
    (dict(beta_end=1.0), "got 0.00085, 1.0"),
    (dict(steps_offset=100), "steps_offset=100 pushes the first timestep to 1000 >= 1000"),
])
def test_bad_schedule_arguments(bad: dict, message: str) -> None:
    kwargs = dict(num_steps=10) | bad
    with pytest.raises(ConfigError) as err:
        make_schedule(kwargs.pop("num_steps"), **kwargs)
    assert message in str(err.value)


def test_schedule_bounds_that_are_allowed() -> None:
    assert make_schedule(10, steps_offset=99).timesteps[0] == 999
    assert make_schedule(1000, spacing="trailing", steps_offset=0).timesteps[-1] == 0
    assert make_schedule(1).timesteps == (1,)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 7])
@pytest.mark.parametrize("offset", [0, 1])
def test_make_schedule_timesteps_are_ddim_schedulers_for_every_spacing(spacing: str, steps: int, offset: int) -> None:
    ref = DDIMScheduler(**dict(SDXL, timestep_spacing=spacing, steps_offset=offset))
    ref.set_timesteps(steps)
    ours = make_schedule(steps, spacing=spacing, steps_offset=offset)
    assert list(ours.timesteps) == ref.timesteps.tolist()
    assert ours.final_alpha_cumprod == pytest.approx(float(ref.final_alpha_cumprod), rel=1e-6)  # set_alpha_to_one


@pytest.mark.parametrize(("option", "fix"), [("thresholding", "thresholding=False"),
                                              ("clip_sample", "clip_sample=False")])
def test_ddim_step_options_that_act_on_x0_are_refused_naming_the_fix(option: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=rf"^scheduler {option}=True .* {re.escape(FIX.format(fix))}$"):
        schedule_from_diffusers(dict(SDXL, **{option: True}), 10)
    assert schedule_from_diffusers(dict(SDXL, **{option: False}), 10).num_steps == 10


def test_schedule_from_diffusers_step_count_limits() -> None:
    assert schedule_from_diffusers(SDXL, 1).timesteps == (1,)  # one step is a schedule
    assert schedule_from_diffusers(dict(SDXL, steps_offset=0), 1000).timesteps == tuple(range(999, -1, -1))
    for bad in (0, -3, 2.5):
        with pytest.raises(ConfigError, match=rf"^num_steps={bad!r} must be a positive integer"):
            schedule_from_diffusers(SDXL, bad)
    # leading spacing with steps_offset=1 puts T = N's first timestep at N itself, one past the table
    with pytest.raises(ConfigError, match=r"^steps_offset=1 pushes the first timestep to 1000 >= 1000"):
        schedule_from_diffusers(SDXL, 1000)


def test_an_unfollowable_spacing_is_named_in_the_refusal() -> None:
    with pytest.raises(ConfigError, match=r"^timestep_spacing='linspace' with T=7: DDIMScheduler steps t=999"):
        schedule_from_diffusers(dict(SDXL, timestep_spacing="linspace"), 7)
