# Samplers as pure functions over denoisers `model(x, t, **extra_args)`: W2SD and its baselines, on VP or flow grids.
"""Every sampler is one DDIM loop (`ddim_loop`) with a denoiser for the main step and an optional pre-step that
changes x before it (a reflection, a re-noising). Samplers take `(model(s), x_T, schedule, ...)` and return a
`SampleOutput` whose `nfe` is the number of denoiser calls actually made (counted, not computed from a formula).
`callback`, if given, receives `{"i", "t", "x", "x_reflected", "denoised"}` after each step: `x_reflected` is the
latent the step started from after the pre-step (None when the step had none), `denoised` the main step's x̂₀.

A denoiser returns the prediction its schedule names (`schedule.prediction`): ε on a `DiscreteSchedule`, the flow
velocity v = ε − x₀ on a `FlowSchedule`. The loop reads every output at the level the latent it was given is at
(`w2sd.ddim.split_prediction`), so on a flow grid each step is Euler and a reflection moves x by
(σ_i − σ_{i+1})·(v_weak(x') − v_strong(x)). Guidance combines outputs in the model's own parameterisation."""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, get_args

import torch

from w2sd.ddim import VPLevel, ddim_transfer, from_x0, renoise, split_prediction
from w2sd.schedule import DiscreteSchedule, FlowSchedule
from w2sd.seeding import per_sample_randn
from w2sd.validation import ConfigError, check_choice, check_int_range

Denoiser = Callable[..., torch.Tensor]
Schedule = DiscreteSchedule | FlowSchedule
Callback = Callable[[dict[str, Any]], None]
PreStep = Callable[[torch.Tensor, int], "torch.Tensor | None"]
"""pre_step(x, i) → the latent the main step at level i starts from, or None to leave x as it is."""

Inversion = Literal["exact", "official"]
Order = Literal["w2s", "s2w"]
Window = Literal["first", "last"]
Alignment = Literal["none", "aligned", "anti"]
INVERSIONS, ORDERS, WINDOWS, ALIGNMENTS = (get_args(c) for c in (Inversion, Order, Window, Alignment))


@dataclass
class SampleOutput:
    x: torch.Tensor
    nfe: int  # denoiser calls made
    nfe_per_sample: float | None = None  # mean evaluations per sample; below nfe when calls covered part of the batch


class NFECounter:
    """Counts denoiser calls, and the samples they evaluated, across all models of one sampler run."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0

    def wrap(self, model: Denoiser, extra_args: dict | None = None) -> Callable[..., torch.Tensor]:
        """The counted denoiser. Called with `rows` (indices into the run's batch) when x holds only those samples:
        batch-first tensors in `extra_args` are cut to the same rows, and a model that keeps per-sample
        conditioning inside itself gets `rows=` too, if its signature takes it."""
        kwargs = extra_args or {}
        takes_rows = accepts_keyword(model, "rows")

        def call(x: torch.Tensor, t: int, rows: torch.Tensor | None = None) -> torch.Tensor:
            self.calls += 1
            self.rows += x.shape[0]
            if rows is None:
                return model(x, t, **kwargs)
            return model(x, t, **take_rows(kwargs, rows), **({"rows": rows} if takes_rows else {}))

        return call

    def output(self, x: torch.Tensor) -> SampleOutput:
        return SampleOutput(x, self.calls, self.rows / x.shape[0])


def accepts_keyword(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and C callables have no inspectable signature
        return False


def take_rows(value: Any, rows: torch.Tensor) -> Any:
    """The given rows of batch-first per-sample inputs, through dicts, lists and tuples; scalars pass through."""
    if isinstance(value, torch.Tensor):
        return value[rows.to(value.device)] if value.dim() else value
    if isinstance(value, dict):
        return {k: take_rows(v, rows) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(take_rows(v, rows) for v in value)
    return value


def _step(model: Callable, x: torch.Tensor, schedule: Schedule, i: int) -> torch.Tensor:
    return ddim_transfer(x, model(x, schedule.timesteps[i]), schedule.level(i), schedule.level(i + 1),
                         schedule.prediction)


def ddim_loop(model: Callable, x: torch.Tensor, schedule: Schedule, *, pre_step: PreStep | None = None,
              callback: Callback | None = None) -> torch.Tensor:
    """Deterministic DDIM (η = 0; on a flow grid, Euler) over the schedule with `model`; `pre_step` may move x
    before each step."""
    for i, t in enumerate(schedule.timesteps):
        x_reflected = pre_step(x, i) if pre_step is not None else None
        x = x if x_reflected is None else x_reflected
        denoised, e = split_prediction(x, model(x, t), schedule.level(i), schedule.prediction)
        x = from_x0(denoised, e, schedule.level(i + 1))
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x_reflected": x_reflected, "denoised": denoised})
    return x


def reflect(
    denoiser: Denoiser,
    inverter: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    i: int,
    *,
    inversion: Inversion = "exact",
) -> torch.Tensor:
    """One reflection x̃_t = Inv_inverter(Den_denoiser(x_t)) at sampling level i (paper §3.1).

    Both conventions query the inverter at the old timestep t_i on the advanced latent (paper Eq. 5).
    `exact` inverts with the coefficients of the interval t_{i+1}→t_i, so with equal ε it returns x_t exactly.
    `official` reproduces the released code: DDIMInverseScheduler.step(ε, timesteps[i+1], x'), whose
    coefficients map level (t_{i+1} − N//T) → t_{i+1} (paper.md §1.4, §10.3); it exists on DDPM grids only.
    On a flow grid `exact` is the inverse Euler step x' + (σ_i − σ_{i+1})·v_inverter(x', t_i).
    """
    check_inversion(inversion, schedule)
    x_adv = _step(denoiser, x, schedule, i)
    out_inv = inverter(x_adv, schedule.timesteps[i])
    if inversion == "exact":
        return ddim_transfer(x_adv, out_inv, schedule.level(i + 1), schedule.level(i), schedule.prediction)
    if i + 1 >= schedule.num_steps:
        raise ConfigError(f"the official inversion needs timesteps[i+1]; step i={i} is the last step")
    t_target = schedule.timesteps[i + 1]
    return ddim_transfer(x_adv, out_inv, VPLevel.from_alpha_bar(schedule.alpha_bar(t_target - schedule.step_ratio)),
                         VPLevel.from_alpha_bar(schedule.alpha_bar(t_target)))


def check_inversion(inversion: str, schedule: Schedule, key: str = "inversion") -> None:
    check_choice(key, inversion, INVERSIONS)
    if inversion == "official" and not isinstance(schedule, DiscreteSchedule):
        raise ConfigError(f"{key}='official' reproduces the released code's DDIMInverseScheduler index arithmetic "
                          "on a DDPM timestep table, which a flow grid does not have; use inversion=exact")


def reflection_steps(num_steps: int, lam: int, window: Window) -> range:
    """Sampling levels that get reflected: the first λ (paper Alg. 1, highest noise) or the last λ before the final
    step. The final step is never reflected, so λ ≤ T − 1 (paper default λ = T − 1)."""
    check_int_range("lam", lam, 0, num_steps - 1, "λ counts reflected steps and must be at most T−1")
    check_choice("window", window, WINDOWS)
    return range(0, lam) if window == "first" else range(num_steps - 1 - lam, num_steps - 1)


def _noise_like(x: torch.Tensor, generators: Sequence[torch.Generator] | None, what: str) -> torch.Tensor:
    if generators is None or len(generators) != x.shape[0]:
        raise ConfigError(f"{what} draws fresh noise: pass one torch.Generator per sample (got "
                          f"{None if generators is None else len(generators)} for batch {x.shape[0]})")
    return per_sample_randn(generators, x.shape[1:], x.dtype).to(x.device)


def _rms(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).double().pow(2).mean(1).sqrt()


def reflection(denoiser: Callable, inverter: Callable, schedule: Schedule, steps: Sequence[int], *,
               inversion: Inversion = "exact", reflections_per_step: int = 1, inversion_noise: float = 0.0,
               generators: Sequence[torch.Generator] | None = None,
               threshold: float | Sequence[float] | None = None) -> PreStep:
    """Pre-step reflecting x on the levels in `steps` (W2SD), `reflections_per_step` times, each followed by
    `inversion_noise`·z. With `threshold` (one value or one per level, e.g. from `calibrate_threshold`), adaptive:
    a sample stops being reflected once a reflection at level i moved it by an RMS ‖x̃ − x‖/√d ≤ threshold[i];
    the stopped samples are dropped from the batch, so they cost nothing. Threshold ∞ at the first reflected level
    reflects no sample. For that, `denoiser`/`inverter` must take `rows=` (NFECounter.wrap's callables do, and pass
    it on to models with per-sample conditioning). The adaptive pre-step keeps this state, so build one per sampling
    run."""
    steps = set(steps)
    tau = None if threshold is None else [threshold] * schedule.num_steps if isinstance(threshold, (int, float)) \
        else list(threshold)
    if tau is not None and (len(tau) != schedule.num_steps or not all(t >= 0 for t in tau)):
        raise ConfigError(f"threshold={threshold} must be a number >= 0 or one per level ({schedule.num_steps}), "
                          "or null to reflect every sample")
    keep = None  # adaptive: which samples are still reflected

    def reflect_rows(x: torch.Tensor, i: int, rows: torch.Tensor | None) -> torch.Tensor:
        gens = generators if rows is None or generators is None else [generators[r] for r in rows.tolist()]
        # a sub-batch: the (counted) models are told which samples x holds, so per-sample conditioning follows
        den, inv = (denoiser, inverter) if rows is None else \
            (partial(denoiser, rows=rows), partial(inverter, rows=rows))
        for _ in range(reflections_per_step):
            x = reflect(den, inv, x, schedule, i, inversion=inversion)
            if inversion_noise > 0:
                x = x + inversion_noise * _noise_like(x, gens, "inversion_noise")
        return x

    def pre_step(x: torch.Tensor, i: int) -> torch.Tensor | None:
        nonlocal keep
        if i not in steps:
            return None
        if tau is None:
            return reflect_rows(x, i, None)
        if keep is None:
            keep = torch.full((x.shape[0],), tau[i] < math.inf, device=x.device)
        rows = keep.nonzero().flatten()
        if len(rows) == 0:
            return None
        everyone = len(rows) == x.shape[0]  # then the plain batched reflection, bit-identical to W2SD
        start = x if everyone else x[rows]
        moved = reflect_rows(start, i, None if everyone else rows)
        keep[rows] = _rms(moved - start) > tau[i]
        if everyone:
            return moved
        x = x.clone()
        x[rows] = moved
        return x

    return pre_step


def renoising(strong: Callable, schedule: Schedule, steps: Sequence[int],
              generators: Sequence[torch.Generator], *, weak: Callable | None, alignment: Alignment) -> PreStep:
    """Pre-step of Re-Sampling: strong-denoise one step, re-noise back with fresh noise z, which `aligned`/`anti`
    flip into the half-space of (anti-)positive cosine with the W2SD perturbation Inv_weak(x') − x."""
    steps = set(steps)

    def pre_step(x: torch.Tensor, i: int) -> torch.Tensor | None:
        if i not in steps:
            return None
        a_t, a_next = schedule.level(i), schedule.level(i + 1)
        x_adv = _step(strong, x, schedule, i)
        z = _noise_like(x, generators, "re-sampling")
        if alignment != "none":
            direction = ddim_transfer(x_adv, weak(x_adv, schedule.timesteps[i]), a_next, a_t, schedule.prediction) - x
            sim = (direction.flatten(1) * z.flatten(1)).sum(1)
            wrong = sim < 0 if alignment == "aligned" else sim >= 0
            z = torch.where(wrong.view(-1, *([1] * (z.dim() - 1))), -z, z)
        return renoise(x_adv, z, a_next, a_t)

    return pre_step


def _check_schedule(schedule: Schedule) -> None:
    if schedule.num_steps < 2:
        raise ConfigError(f"T={schedule.num_steps} sampling steps is too few; W2SD needs T >= 2")


@torch.no_grad()
def sample_ddim(
    model: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """Standard deterministic DDIM (η = 0) with one model. NFE = T."""
    counter = NFECounter()
    return counter.output(ddim_loop(counter.wrap(model, extra_args), x, schedule, callback=callback))


@torch.no_grad()
def sample_w2sd(
    strong: Denoiser,
    weak: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    lam: int | None = None,
    inversion: Inversion = "exact",
    order: Order = "w2s",
    final: Denoiser | None = None,
    window: Window = "first",
    reflections_per_step: int = 1,
    inversion_noise: float = 0.0,
    threshold: float | Sequence[float] | None = None,
    generators: Sequence[torch.Generator] | None = None,
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """W2SD (paper Alg. 1): on each reflected level, x ← Inv_weak(Den_strong(x)), then the strong DDIM step.

    lam: reflected steps, default T − 1. order: `w2s` (W2SD) or `s2w` (S2WD: weak denoises, strong inverts).
    final: denoiser for the main step (default `strong`; the paper runs the reflection legs at CFG 1 and the main
    step at CFG 5.5). inversion_noise: k of paper Eq. 17, adds k·z (z ~ N(0, I)) to each reflected latent.
    threshold: adaptive reflection (see `reflection`): None or 0 reflects every sample, ∞ none.
    NFE = T + 2·λ·reflections_per_step (adaptive: fewer per sample, see `nfe_per_sample`).
    """
    _check_schedule(schedule)
    lam = schedule.num_steps - 1 if lam is None else lam
    steps = reflection_steps(schedule.num_steps, lam, window)
    check_inversion(inversion, schedule)
    check_choice("order", order, ORDERS)
    check_int_range("reflections_per_step", reflections_per_step, 1)
    if inversion_noise < 0:
        raise ConfigError(f"inversion_noise={inversion_noise} must be >= 0")
    if inversion_noise > 0:
        _noise_like(x, generators, "inversion_noise > 0")
    counter = NFECounter()
    strong_eps, weak_eps = counter.wrap(strong, extra_args), counter.wrap(weak, extra_args)
    denoiser, inverter = (strong_eps, weak_eps) if order == "w2s" else (weak_eps, strong_eps)
    pre_step = reflection(denoiser, inverter, schedule, steps, inversion=inversion, threshold=threshold,
                          reflections_per_step=reflections_per_step, inversion_noise=inversion_noise,
                          generators=generators)
    final_eps = counter.wrap(final if final is not None else strong, extra_args)
    return counter.output(ddim_loop(final_eps, x, schedule, pre_step=pre_step, callback=callback))


@torch.no_grad()
def sample_autoguidance(
    strong: Denoiser,
    weak: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    w: float = 1.0,
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """DDIM on ε_s + w·(ε_s − ε_w): the paper's App. E.4 autoguidance and the reviewers' "difference guidance".

    edm2's autoguidance writes D = D_w + g·(D_s − D_w) = D_s + (g − 1)·(D_s − D_w); since D is affine in ε at a
    fixed level, that is this rule with w = g − 1 (edm2's g = 2 is w = 1). w = 0 is standard strong sampling.
    To first order one W2SD reflection moves x along the same direction (Theorem 1); W2SD differs by evaluating
    the weak model on the advanced latent and by moving the latent rather than the prediction. NFE = 2T.
    """
    _check_schedule(schedule)
    counter = NFECounter()
    strong_eps, weak_eps = counter.wrap(strong, extra_args), counter.wrap(weak, extra_args)

    def guided(x_in: torch.Tensor, t: int) -> torch.Tensor:
        e_s = strong_eps(x_in, t)
        return e_s + w * (e_s - weak_eps(x_in, t))

    return counter.output(ddim_loop(guided, x, schedule, callback=callback))


@torch.no_grad()
def sample_advanced_guidance(
    strong: Denoiser,
    weak: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    w: float = 1.0,
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """DDIM on ε_s(x_t) + w·(ε_s(x_t) − ε_w(x', t)), x' the strong DDIM step from x_t, on every level but the last
    (which W2SD never reflects either): difference guidance whose weak model is read on the advanced latent, the
    first-order picture of one W2SD reflection. One W2SD level moves x_t to x̃ = x + (B/A)·(ε_s(x_t) − ε_w(x')), with
    x' = A·x_t + B·ε_s(x_t) the strong DDIM step, then takes the strong step from x̃; replacing ε_s(x̃) by ε_s(x_t)
    in that step (first order in the gap) gives this rule with w = 1. NFE = 2T − 1 (W2SD: 3T − 2), so the gap
    between it and W2SD is what the latent move itself buys."""
    counter = NFECounter()
    strong_eps, weak_eps = counter.wrap(strong, extra_args), counter.wrap(weak, extra_args)
    level_of = {t: i for i, t in enumerate(schedule.timesteps)}

    def guided(x_t: torch.Tensor, t: int) -> torch.Tensor:
        i = level_of[t]
        e_s = strong_eps(x_t, t)
        if i == schedule.num_steps - 1:  # W2SD never reflects the final step (λ ≤ T − 1): plain strong ε there
            return e_s
        x_adv = ddim_transfer(x_t, e_s, schedule.level(i), schedule.level(i + 1), schedule.prediction)
        return e_s + w * (e_s - weak_eps(x_adv, t))

    return counter.output(ddim_loop(guided, x, schedule, callback=callback))


@torch.no_grad()
def sample_resampling(
    strong: Denoiser,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generators: Sequence[torch.Generator],
    lam: int | None = None,
    weak: Denoiser | None = None,
    alignment: Alignment = "none",
    window: Window = "first",
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """Re-Sampling (paper Alg. 2): on reflected levels, strong-denoise one step, re-noise back with fresh Gaussian
    noise, then take the strong step. NFE = T + λ.

    alignment (paper Alg. 3, Table 14): `aligned` keeps noise whose cosine with the W2SD perturbation
    x̃_t − x_t is ≥ 0, `anti` keeps noise with cosine < 0; needs `weak` and costs one more call per reflected
    step (NFE = T + 2λ). Redrawing until the sign fits is the same in distribution as flipping z to the wanted
    half-space, which is what we do, so the draw count per sample stays fixed.
    """
    _check_schedule(schedule)
    lam = schedule.num_steps - 1 if lam is None else lam
    steps = reflection_steps(schedule.num_steps, lam, window)
    check_choice("alignment", alignment, ALIGNMENTS)
    if alignment != "none" and weak is None:
        raise ConfigError(f"alignment={alignment!r} needs the weak model for the W2SD direction; pass weak=")
    _noise_like(x, generators, "re-sampling")
    counter = NFECounter()
    strong_eps = counter.wrap(strong, extra_args)
    pre_step = renoising(strong_eps, schedule, steps, generators, alignment=alignment,
                         weak=counter.wrap(weak, extra_args) if weak is not None else None)
    return counter.output(ddim_loop(strong_eps, x, schedule, pre_step=pre_step, callback=callback))


@torch.no_grad()
def calibrate_threshold(strong: Denoiser, weak: Denoiser, x: torch.Tensor, schedule: Schedule,
                        quantile: float, **w2sd_options: Any) -> list[float]:
    """Per-level adaptive-reflection thresholds from a held-out calibration batch: the `quantile` of the samples'
    RMS reflection displacement at each level under W2SD with the same options (∞ on levels it does not reflect)."""
    trace: list[dict] = []
    sample_w2sd(strong, weak, x, schedule, callback=trace.append, **w2sd_options)
    starts = [x] + [step["x"] for step in trace[:-1]]
    return [math.inf if step["x_reflected"] is None else float(_rms(step["x_reflected"] - start).quantile(quantile))
            for step, start in zip(trace, starts)]
