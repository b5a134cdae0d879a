# The sampling core on rectified-flow grids: diffusers' σ grids, Euler steps, reflections, Theorem 1 for velocities.
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from toy.gmm import ExactDenoiser, GaussianMixture
from w2sd.ddim import Level, split_prediction
from w2sd.methods import SAMPLERS
from w2sd.sampling import (
    calibrate_threshold,
    reflect,
    sample_advanced_guidance,
    sample_autoguidance,
    sample_ddim,
    sample_resampling,
    sample_w2sd,
)
from w2sd.schedule import flow_schedule_from_diffusers, flow_shift_mu, make_flow_schedule
from w2sd.seeding import per_sample_generators, per_sample_randn
from w2sd.theory import reflection_coefficient
from w2sd.validation import ConfigError

# scheduler/scheduler_config.json of the Hub checkpoints (FLUX.1-dev, FLUX.1-schnell, SD3-medium / SD3.5-large)
FLUX_DEV = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
FLUX_SCHNELL = dict(FLUX_DEV, shift=1.0, use_dynamic_shifting=False)
SD3 = dict(num_train_timesteps=1000, shift=3.0)
CONFIGS = {"flux_dev": FLUX_DEV, "flux_schnell": FLUX_SCHNELL, "sd3": SD3, "wan_flow_shift_5": dict(shift=5.0),
           "shift_terminal": dict(SD3, shift_terminal=0.1), "invert_sigmas": dict(shift=2.0, invert_sigmas=True),
           "linear_time_shift": dict(FLUX_DEV, time_shift_type="linear")}
MEANS, STD = [[-4.0], [4.0]], 0.87


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("steps", [4, 28, 50])
@pytest.mark.parametrize("flux_sigmas", [False, True])
def test_grid_equals_flow_match_euler_scheduler(name: str, steps: int, flux_sigmas: bool) -> None:
    """σ and timesteps bit for bit as the scheduler sets them (FluxPipeline passes linspace(1, 1/T, T) and μ from
    the packed sequence length: 1024² → 4096 tokens; SD3 passes neither)."""
    scheduler = FlowMatchEulerDiscreteScheduler(**CONFIGS[name])
    kwargs = {}
    if scheduler.config.use_dynamic_shifting:
        kwargs["mu"] = flow_shift_mu(4096 if steps == 28 else 1024, scheduler.config)
    if flux_sigmas:
        kwargs["sigmas"] = np.linspace(1.0, 1 / steps, steps)
    scheduler.set_timesteps(steps, **kwargs)
    ours = flow_schedule_from_diffusers(scheduler.config, steps, **kwargs)
    assert torch.equal(torch.tensor(ours.sigmas, dtype=torch.float32), scheduler.sigmas)
    assert torch.equal(torch.tensor(ours.timesteps, dtype=torch.float32), scheduler.timesteps)
    assert ours.num_steps == steps and ours.prediction == "velocity"


def test_flux_mu_is_the_pipelines_calculate_shift() -> None:
    """FluxPipeline: μ = m·L + b, m = (1.15 − 0.5)/(4096 − 256), b = 0.5 − 256·m; L = 4096 at 1024², 1024 at 512²."""
    m = (1.15 - 0.5) / (4096 - 256)
    assert flow_shift_mu(4096, FLUX_DEV) == pytest.approx(1.15, rel=1e-12)
    assert flow_shift_mu(1024, FLUX_DEV) == pytest.approx(1024 * m + 0.5 - 256 * m, rel=1e-12)


@pytest.mark.parametrize("bad,match", [
    (dict(use_karras_sigmas=True), "use_karras_sigmas=True"), (dict(stochastic_sampling=True), "stochastic_sampling"),
    (dict(shift=0.0), "shift=0.0"), (dict(shift=float("nan")), "shift=nan"),
    (dict(time_shift_type="cosine"), "time_shift_type='cosine'"),
    (dict(use_dynamic_shifting=True), "needs a finite mu")])
def test_unsupported_or_bad_grid_options_are_refused_naming_the_value(bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        flow_schedule_from_diffusers(bad, 10)


def velocity_field(scale: float):
    """A smooth made-up velocity model, v(x, t) = tanh(x)·c + t/1000."""
    return lambda x, t: torch.tanh(x) * scale + t / 1000


def test_standard_sampling_is_the_schedulers_euler_loop() -> None:
    """sample_ddim on a flow grid steps exactly as FlowMatchEulerDiscreteScheduler.step does with the same model."""
    config = dict(SD3)
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    scheduler.set_timesteps(12)
    model = velocity_field(0.7)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    expected = x.clone()
    for t in scheduler.timesteps:
        expected = scheduler.step(model(expected, float(t)), t, expected).prev_sample
    out = sample_ddim(model, x, flow_schedule_from_diffusers(config, 12))
    assert out.nfe == 12
    assert torch.allclose(out.x, expected, atol=1e-6)


def test_one_reflection_is_the_euler_step_there_and_back() -> None:
    """x' = x + (σ_{i+1} − σ_i)·v_s(x, t_i), x̃ = x' + (σ_i − σ_{i+1})·v_w(x', t_i): the inverter is read on the advanced
    latent at the old timestep (paper Eq. 5), in float64 by hand."""
    schedule = make_flow_schedule(8, shift=3.0)
    strong, weak = velocity_field(0.9), velocity_field(0.4)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for i in (0, 3, 6):
        s_i, s_next, t = schedule.sigmas[i], schedule.sigmas[i + 1], schedule.timesteps[i]
        x_adv = x + (s_next - s_i) * strong(x, t)
        expected = x_adv + (s_i - s_next) * weak(x_adv, t)
        assert torch.allclose(reflect(strong, weak, x, schedule, i), expected, atol=1e-12)
    with pytest.raises(ConfigError, match="inversion='official'.*use inversion=exact"):
        reflect(strong, weak, x, schedule, 0, inversion="official")


def test_velocity_split_at_sigma_one_is_finite() -> None:
    """σ = 1 (α = 0) is the first level of Flux's grid: x̂₀ = x − v and ε̂ = x there, no division by α."""
    x, v = torch.tensor([[0.3]]), torch.tensor([[1.2]])
    x0, eps = split_prediction(x, v, Level.flow(1.0), "velocity")
    assert x0.item() == pytest.approx(0.3 - 1.2) and eps.item() == pytest.approx(0.3)


def mixtures():
    strong = GaussianMixture.build(MEANS, STD, [0.45, 0.55])
    weak = GaussianMixture.build(MEANS, STD, [0.25, 0.75])
    return strong, weak


def test_exact_velocity_is_the_posterior_mean_difference_from_autograd_score() -> None:
    """v = E[ε|x] − E[x₀|x], Tweedie on the autograd score of log p: E[x₀|x] = (x + σ²∇log p)/α, E[ε|x] = −σ∇log p."""
    strong, _ = mixtures()
    schedule = make_flow_schedule(10, shift=3.0)
    model = ExactDenoiser(strong, schedule)
    x = torch.linspace(-6, 6, 41, dtype=torch.float64)[:, None].requires_grad_()
    for i in (1, 5, 9):
        level = schedule.level(i)
        score, = torch.autograd.grad(strong.log_prob(x, level).sum(), x)
        expected = -level.sigma * score - (x + level.sigma**2 * score) / level.alpha
        assert torch.allclose(model(x.detach(), schedule.timesteps[i]), expected.detach(), atol=1e-10)
    # at σ = 1 the noised density is N(0, 1) whatever the data: x̂₀ = E[x₀] = 0.45·(−4) + 0.55·4 = 0.4
    assert torch.allclose(model(x.detach(), 1000.0), x.detach() - 0.4, atol=1e-12)


def test_theorem1_in_velocity_form() -> None:
    """x̃ − x → Δσ·(σ/(1 − σ))·(∇log p_s − ∇log p_w)(x) as the step shrinks, with exact mixture velocities."""
    s_mix, w_mix = mixtures()
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
    rel = []
    for steps in (25, 100, 400, 1000):
        schedule = make_flow_schedule(steps)
        i = int(0.4 * steps)
        a, b = schedule.level(i), schedule.level(i + 1)
        delta1 = s_mix.score(x, a) - w_mix.score(x, a)
        coefficient = reflection_coefficient(a, b, "velocity")
        assert coefficient == pytest.approx((a.sigma - b.sigma) * a.sigma / (1 - a.sigma), rel=1e-12)
        actual = reflect(ExactDenoiser(s_mix, schedule), ExactDenoiser(w_mix, schedule), x, schedule, i) - x
        predicted = coefficient * delta1
        rel.append(float((actual - predicted).norm() / predicted.norm()))
    assert all(p > q for p, q in zip(rel, rel[1:])), rel
    assert rel[-1] < 0.05, rel


def test_every_sampler_runs_on_a_flow_grid_with_counted_nfe() -> None:
    """The same samplers, unchanged: NFE = T (standard), T + 2λ (W2SD), 2T (guidance), 2T − 1 (guidance on the
    advanced latent), T + λ (re-sampling); W2SD with weak = strong and λ = 0 is standard sampling bit for bit."""
    s_mix, w_mix = mixtures()
    schedule = make_flow_schedule(10)
    strong, weak = ExactDenoiser(s_mix, schedule), ExactDenoiser(w_mix, schedule)
    gens = per_sample_generators(range(32))
    x = per_sample_randn(gens, (1,), torch.float64)
    base = sample_ddim(strong, x, schedule)
    assert base.nfe == 10
    assert torch.equal(sample_w2sd(strong, weak, x, schedule, lam=0).x, base.x)
    assert sample_w2sd(strong, weak, x, schedule).nfe == 10 + 2 * 9
    assert sample_w2sd(strong, weak, x, schedule, lam=3, window="last").nfe == 16
    assert sample_autoguidance(strong, weak, x, schedule, w=0.0).nfe == 20
    assert torch.allclose(sample_autoguidance(strong, weak, x, schedule, w=0.0).x, base.x, atol=1e-12)
    assert sample_advanced_guidance(strong, weak, x, schedule).nfe == 19
    assert sample_resampling(strong, x, schedule, generators=per_sample_generators(range(32)), lam=4).nfe == 14
    tau = calibrate_threshold(strong, weak, per_sample_randn(per_sample_generators(range(100, 164)), (1,),
                                                             torch.float64), schedule, 0.5)
    adaptive = sample_w2sd(strong, weak, x, schedule, threshold=tau)
    assert 10 + 2 < adaptive.nfe_per_sample < 10 + 2 * 9  # every sample is reflected once, about half stop early
    assert set(SAMPLERS) == {"ddim", "w2sd", "autoguidance", "resampling", "advanced_guidance"}  # all covered here
    with pytest.raises(ConfigError, match="inversion='official'"):
        sample_w2sd(strong, weak, x, schedule, inversion="official")


def test_w2sd_moves_the_minority_mode_toward_the_ideal_on_the_flow_grid() -> None:
    """Strong 0.45 / weak 0.25 on the left mode: the reflection moves the left share up from the strong model's."""
    s_mix, w_mix = mixtures()
    schedule = make_flow_schedule(50)
    x = per_sample_randn(per_sample_generators(range(4000)), (1,), torch.float64)
    strong, weak = ExactDenoiser(s_mix, schedule), ExactDenoiser(w_mix, schedule)
    left = lambda out: float((out.x[:, 0] < 0).double().mean())  # noqa: E731
    standard, reflected = left(sample_ddim(strong, x, schedule)), left(sample_w2sd(strong, weak, x, schedule))
    assert abs(standard - 0.45) < 0.03
    assert reflected > standard + 0.05
