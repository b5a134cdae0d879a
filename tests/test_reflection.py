# The reflection operator and W2SD sampler: exactness, Theorem 1, the official convention, NFE, seeding.
import math

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from toy.gmm import ExactDenoiser, GaussianMixture
from w2sd.ddim import VPLevel, ddim_transfer
from w2sd.sampling import (
    reflect,
    reflection_steps,
    sample_autoguidance,
    sample_ddim,
    sample_resampling,
    sample_w2sd,
)
from w2sd.schedule import make_schedule, schedule_from_diffusers
from w2sd.seeding import per_sample_generators, per_sample_randn
from w2sd.theory import reflection_coefficient
from w2sd.validation import ConfigError

TOY = dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02, spacing="trailing", steps_offset=0,
           set_alpha_to_one=True)

V = VPLevel.from_alpha_bar  # a VP level from ā


def mixtures(strong=(0.45, 0.55), weak=(0.25, 0.75)):
    return (GaussianMixture.build([[-4.0], [4.0]], 0.87, list(strong)),
            GaussianMixture.build([[-4.0], [4.0]], 0.87, list(weak)))


def exact_models(schedule, strong=(0.45, 0.55), weak=(0.25, 0.75)):
    s, w = mixtures(strong, weak)
    return ExactDenoiser(s, schedule), ExactDenoiser(w, schedule)


def noise(n: int, dim: int = 1) -> torch.Tensor:
    return per_sample_randn(per_sample_generators(range(n)), (dim,), torch.float64)


def test_step_then_exact_inversion_with_reused_eps_returns_x() -> None:
    sched = make_schedule(20, **TOY)
    x = noise(128)
    fixed = torch.randn(128, 1, dtype=torch.float64)
    for i in range(sched.num_steps - 1):
        back = reflect(lambda _x, _t: fixed, lambda _x, _t: fixed, x, sched, i, inversion="exact")
        assert torch.allclose(back, x, atol=1e-10)


def test_round_trip_error_of_a_real_model_shrinks_with_T() -> None:
    """weak = strong: the only error left is evaluating ε at the advanced latent (paper's E_t)."""
    errors = []
    for steps in (10, 40, 160):
        sched = make_schedule(steps, **TOY)
        model, _ = exact_models(sched)
        x = noise(512) * 0.5
        i = steps // 2
        xt = ddim_transfer(x, model(x, sched.timesteps[0]), sched.level(0), sched.level(i))
        errors.append(float((reflect(model, model, xt, sched, i) - xt).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1 * errors[0]


def test_theorem1_first_order_displacement() -> None:
    """x̃ − x → C·Δ1(x) with C = ā σ (σ − σ_next) as the step shrinks (relative error decreasing)."""
    s_mix, w_mix = mixtures()
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)[:, None]
    rel = []
    for steps in (25, 100, 400, 1000):
        sched = make_schedule(steps, **TOY)
        strong, weak = exact_models(sched)
        i = int(0.6 * steps)
        a_t, a_n = sched.level(i), sched.level(i + 1)
        delta1 = s_mix.score(x, a_t) - w_mix.score(x, a_t)
        predicted = reflection_coefficient(a_t, a_n) * delta1
        actual = reflect(strong, weak, x, sched, i) - x
        rel.append(float((actual - predicted).norm() / predicted.norm()))
    assert all(a > b for a, b in zip(rel, rel[1:])), rel
    assert rel[-1] < 0.05  # first-order: the relative error falls like Δt (≈ 0.023 at T = 1000)


def test_weak_equal_strong_exact_reflection_is_near_identity() -> None:
    """Bound: with weak = strong each reflection errs by O(Δt²) (ε read at the advanced latent), so over λ = T−1
    steps the samples move by O(1/T): mean |Δx| ≤ 0.25 at T = 50 (modes are 8 apart) and halving as T doubles."""
    moves = []
    for steps in (50, 100, 200):
        sched = make_schedule(steps, **TOY)
        strong, _ = exact_models(sched)
        x = noise(2000)
        moves.append(float((sample_ddim(strong, x, sched).x - sample_w2sd(strong, strong, x, sched).x).abs().mean()))
    assert moves[0] < 0.25
    for a, b in zip(moves, moves[1:]):
        assert 1.6 < a / b < 2.4, moves


def test_lam_zero_is_standard_sampling_bit_for_bit() -> None:
    sched = make_schedule(12, **TOY)
    strong, weak = exact_models(sched)
    x = noise(300)
    assert torch.equal(sample_w2sd(strong, weak, x, sched, lam=0).x, sample_ddim(strong, x, sched).x)


@pytest.mark.parametrize("steps,lam,reps", [(10, 9, 1), (10, 3, 1), (8, 0, 1), (6, 5, 2)])
def test_nfe_is_counted(steps: int, lam: int, reps: int) -> None:
    sched = make_schedule(steps, **TOY)
    strong, weak = exact_models(sched)
    x = noise(4)
    assert sample_w2sd(strong, weak, x, sched, lam=lam, reflections_per_step=reps).nfe == steps + 2 * lam * reps
    assert sample_ddim(strong, x, sched).nfe == steps
    assert sample_autoguidance(strong, weak, x, sched).nfe == 2 * steps
    gens = per_sample_generators(range(4))
    assert sample_resampling(strong, x, sched, generators=gens, lam=lam).nfe == steps + lam


def test_official_convention_reproduces_released_code_with_diffusers_schedulers() -> None:
    """The released loop (paper.md §1.4), written with diffusers' own DDIMScheduler/DDIMInverseScheduler."""
    config = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000,
                  timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    steps = 6
    fwd, inv = DDIMScheduler(**config), DDIMInverseScheduler.from_config(config)
    fwd.set_timesteps(steps)
    inv.set_timesteps(steps)

    def strong(x, t):
        return torch.tanh(x) * 0.4 + t / 3000

    def weak(x, t):
        return torch.sin(x) * 0.3 - t / 5000

    def final(x, t):
        return torch.tanh(0.5 * x) * 0.6

    x0 = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x, ts = x0.clone(), fwd.timesteps
    for i, t in enumerate(ts):
        if i < steps - 1:
            x_adv = fwd.step(strong(x, int(t)), t, x).prev_sample
            x = inv.step(weak(x_adv, int(t)), ts[i + 1], x_adv).prev_sample
        x = fwd.step(final(x, int(t)), t, x).prev_sample
    ours = sample_w2sd(strong, weak, x0, schedule_from_diffusers(fwd.config, steps), inversion="official",
                       final=final).x
    assert torch.allclose(ours, x, rtol=1e-5, atol=1e-6)
    # and it is a different operator from the exact convention
    exact = sample_w2sd(strong, weak, x0, schedule_from_diffusers(fwd.config, steps), final=final).x
    assert not torch.allclose(exact, x, atol=1e-4)


def test_official_index_arithmetic_hand_checked() -> None:
    """T = 50 SDXL schedule, i = 0: the inverse maps level 941 → 961 (not 961 → 981), paper.md §1.4."""
    sched = make_schedule(50)
    x_adv, eps = torch.ones(1, 1, dtype=torch.float64), torch.full((1, 1), 0.5, dtype=torch.float64)
    out = reflect(lambda x, t: torch.zeros_like(x), lambda x, t: eps, x_adv, sched, 0, inversion="official")
    a = sched.alphas_cumprod
    x_after_denoise = ddim_transfer(x_adv, torch.zeros_like(x_adv), V(float(a[981])), V(float(a[961])))
    expected = ddim_transfer(x_after_denoise, eps, V(float(a[941])), V(float(a[961])))
    assert torch.allclose(out, expected)
    c_x = math.sqrt(float(a[961]) / float(a[941]))
    assert abs(c_x - 0.894) < 2e-3  # the coefficient paper.md quotes for i = 0


def test_same_seed_same_samples_and_batch_independence() -> None:
    sched = make_schedule(10, **TOY)
    strong, weak = exact_models(sched)
    seeds = list(range(100, 140))
    x = per_sample_randn(per_sample_generators(seeds), (1,), torch.float64)
    full = sample_resampling(strong, x, sched, generators=per_sample_generators(seeds), lam=5).x
    again = sample_resampling(strong, x, sched, generators=per_sample_generators(seeds), lam=5).x
    half = sample_resampling(strong, x[:20], sched, generators=per_sample_generators(seeds[:20]), lam=5).x
    assert torch.equal(full, again)
    assert torch.equal(full[:20], half)


def test_aligned_resampling_noise_points_along_w2sd_direction() -> None:
    sched = make_schedule(10, **TOY)
    strong, weak = exact_models(sched)
    x = noise(400)
    kw = dict(generators=None, lam=9, weak=weak)
    aligned = sample_resampling(strong, x, sched, **(kw | {"generators": per_sample_generators(range(400)),
                                                             "alignment": "aligned"})).x
    anti = sample_resampling(strong, x, sched, **(kw | {"generators": per_sample_generators(range(400)),
                                                          "alignment": "anti"})).x
    left = lambda z: float((z < 0).double().mean())  # noqa: E731  weak lacks the left mode → Δ1 pushes left
    assert left(aligned) > left(anti)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lam=10), "lam=10 must be in [0, 9]; λ counts reflected steps and must be at most T−1"),
    (dict(lam=-1), "lam=-1 must be in [0, 9]"),
    (dict(inversion="approx"), "inversion='approx' is not one of ['exact', 'official']"),
    (dict(order="x"), "order='x' is not one of ['w2s', 's2w']"),
    (dict(window="middle"), "window='middle' is not one of ['first', 'last']"),
    (dict(reflections_per_step=0), "reflections_per_step=0 must be >= 1"),
    (dict(inversion_noise=-0.1), "inversion_noise=-0.1 must be >= 0"),
    (dict(inversion_noise=0.1), "inversion_noise > 0 draws fresh noise: pass one torch.Generator per sample "
     "(got None for batch 2)"),
    (dict(inversion_noise=0.1, generators=per_sample_generators([1])), "(got 1 for batch 2)"),
])
def test_bad_sampler_arguments(kwargs: dict, message: str) -> None:
    sched = make_schedule(10, **TOY)
    strong, weak = exact_models(sched)
    with pytest.raises(ConfigError) as err:
        sample_w2sd(strong, weak, noise(2), sched, **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "re-sampling draws fresh noise: pass one torch.Generator per sample (got None for batch 2)"),
    (dict(generators=per_sample_generators([0, 1]), alignment="aligned"),
     "alignment='aligned' needs the weak model for the W2SD direction; pass weak="),
    (dict(generators=per_sample_generators([0, 1]), alignment="up"), "alignment='up' is not one of"),
])
def test_bad_resampling_arguments(kwargs: dict, message: str) -> None:
    sched = make_schedule(10, **TOY)
    strong, _ = exact_models(sched)
    with pytest.raises(ConfigError) as err:
        sample_resampling(strong, noise(2), sched, **(dict(generators=None) | kwargs))
    assert message in str(err.value)


@pytest.mark.parametrize("sampler", [sample_w2sd, sample_autoguidance])
def test_single_step_schedule_rejected_two_steps_run(sampler) -> None:
    strong, weak = exact_models(make_schedule(1, **TOY))
    with pytest.raises(ConfigError, match="T=1 sampling steps is too few; W2SD needs T >= 2"):
        sampler(strong, weak, noise(2), make_schedule(1, **TOY))
    assert sampler(strong, weak, noise(2), make_schedule(2, **TOY)).nfe == 4  # λ = T − 1 = 1 or 2 models × 2


def test_official_inversion_has_no_target_on_the_last_step() -> None:
    sched = make_schedule(10, **TOY)
    strong, weak = exact_models(sched)
    reflect(strong, weak, noise(2), sched, 8, inversion="official")
    with pytest.raises(ConfigError, match="the official inversion needs timesteps\\[i\\+1\\]; step i=9 is the last"):
        reflect(strong, weak, noise(2), sched, 9, inversion="official")


@pytest.mark.parametrize("window, expected", [("first", range(0, 3)), ("last", range(6, 9))])
def test_reflection_window_levels(window: str, expected: range) -> None:
    """Paper Alg. 1 reflects levels 0 … λ−1; the `last` window ends just before the final, never-reflected step."""
    assert reflection_steps(10, 3, window) == expected
    assert reflection_steps(10, 9, window) == range(0, 9) and reflection_steps(10, 0, window) == range(0)
