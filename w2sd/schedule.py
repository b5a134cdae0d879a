# Sampling grids of noise levels: discrete VP schedules (DDPM betas) and rectified-flow σ grids, as in diffusers.
"""A schedule is T sampling timesteps (what the network is called with) and T + 1 levels (α, σ) — the last one the
clean end point — plus the prediction its networks make: `DiscreteSchedule` (ε on ā levels, diffusers' DDIM
schedulers) and `FlowSchedule` (velocity on (1 − σ, σ) levels, diffusers' FlowMatchEulerDiscreteScheduler). The
samplers only use `timesteps`, `level(i)`, `num_steps` and `prediction`."""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from w2sd.ddim import Level, Prediction, VPLevel
from w2sd.validation import ConfigError

BETA_SCHEDULES = ("linear", "scaled_linear")
SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class DiscreteSchedule:
    """Sampling timesteps t_0 > … > t_{T-1} over a table of cumulative alphas ā[0 … N-1].

    `final_alpha_cumprod` is the level the last step lands on (ā_0 or 1.0, diffusers' `set_alpha_to_one`); it is
    also what diffusers' DDIMInverseScheduler uses for a negative timestep (its `initial_alpha_cumprod`).
    """

    alphas_cumprod: torch.Tensor  # float64, shape [num_train_timesteps]
    timesteps: tuple[int, ...]
    final_alpha_cumprod: float
    step_ratio: int  # num_train_timesteps // T, the offset diffusers' DDIM schedulers use

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha_bar(self, t: int) -> float:
        """ā at a training timestep; a negative timestep means 'clean' as in diffusers."""
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    @property
    def prediction(self) -> Prediction:
        return "epsilon"

    def level_alpha_bar(self, i: int) -> float:
        """ā of sampling level i: i < T is timestep t_i, i == T is the clean end point."""
        return self.alpha_bar(self.timesteps[i]) if i < self.num_steps else self.final_alpha_cumprod

    def level(self, i: int) -> VPLevel:
        """(α, σ) = (√ā, √(1 − ā)) of sampling level i."""
        return VPLevel.from_alpha_bar(self.level_alpha_bar(i))

    def level_at(self, t: int) -> VPLevel:
        """The level of training timestep t (a network's view of its input)."""
        return VPLevel.from_alpha_bar(self.alpha_bar(t))

    def sigma(self, i: int) -> float:
        """VE-equivalent noise level σ/α = sqrt((1-ā)/ā) of sampling level i."""
        a = self.level_alpha_bar(i)
        return math.sqrt((1.0 - a) / a)


def make_betas(beta_schedule: str, beta_start: float, beta_end: float, num_train_timesteps: int) -> torch.Tensor:
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    raise ConfigError(f"beta_schedule={beta_schedule!r} is not supported; use one of {BETA_SCHEDULES}")


def make_timesteps(num_steps: int, num_train_timesteps: int, spacing: str, steps_offset: int) -> tuple[int, ...]:
    """Descending sampling timesteps exactly as diffusers' DDIMScheduler.set_timesteps computes them."""
    if spacing == "leading":
        ratio = num_train_timesteps // num_steps
        steps = [i * ratio + steps_offset for i in range(num_steps)]
    elif spacing == "trailing":
        ratio = num_train_timesteps / num_steps
        steps = [round(num_train_timesteps - i * ratio) - 1 for i in range(num_steps)][::-1]
    elif spacing == "linspace":
        steps = [round(v) for v in torch.linspace(0, num_train_timesteps - 1, num_steps, dtype=torch.float64).tolist()]
    else:
        raise ConfigError(f"spacing={spacing!r} is not supported; use one of {SPACINGS}")
    return tuple(int(s) for s in reversed(steps))


def make_schedule(
    num_steps: int,
    *,
    beta_schedule: str = "scaled_linear",
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = 1000,
    spacing: str = "leading",
    steps_offset: int = 1,
    set_alpha_to_one: bool = False,
) -> DiscreteSchedule:
    """Defaults are SD1.5/SDXL's DDIM configuration (paper.md §1.4: T = 50 gives t_i = 981 − 20·i)."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(f"num_steps={num_steps!r} must be a positive integer (the number of sampling steps T)")
    if num_steps > num_train_timesteps:
        raise ConfigError(f"num_steps={num_steps} exceeds num_train_timesteps={num_train_timesteps}; lower T")
    if not 0 < beta_start < beta_end < 1:
        raise ConfigError(f"betas must satisfy 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
    betas = make_betas(beta_schedule, beta_start, beta_end, num_train_timesteps)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    timesteps = make_timesteps(num_steps, num_train_timesteps, spacing, steps_offset)
    if timesteps[0] >= num_train_timesteps:
        raise ConfigError(
            f"steps_offset={steps_offset} pushes the first timestep to {timesteps[0]} >= {num_train_timesteps}; "
            "lower steps_offset or use spacing='trailing'"
        )
    final = 1.0 if set_alpha_to_one else float(alphas_cumprod[0])
    return DiscreteSchedule(alphas_cumprod, timesteps, final, num_train_timesteps // num_steps)


FIX = "pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, {})"


def ddim_scheduler(config: Mapping) -> Any:
    """diffusers' DDIMScheduler for a pipeline's scheduler config (any scheduler class), exactly as
    `DDIMScheduler.from_config(pipe.scheduler.config)`: options the config leaves out take DDIM's defaults, not the
    original class's (e.g. set_alpha_to_one=True)."""
    from diffusers import DDIMScheduler  # deferred: the toy experiments use this module without diffusers

    return DDIMScheduler.from_config(config)


def check_step_options(config: Mapping) -> None:
    """Refuse the DDIM step options an ε-sampler cannot reproduce (both act on x̂₀, not on ε). They are read from
    the config itself: a config without `clip_sample` (Euler/DPM files such as Juggernaut-XL's) is not clipped,
    although DDIMScheduler.from_config would default it to True — a pixel-space default the checkpoint's own
    scheduler never applies to latents."""
    if config.get("thresholding", False):
        raise ConfigError("scheduler thresholding=True clips x̂₀ per sample inside each DDIM step, which the W2SD "
                          "loop cannot reproduce; turn it off: " + FIX.format("thresholding=False"))
    if config.get("clip_sample", False):
        raise ConfigError(f"scheduler clip_sample=True clamps x̂₀ to ±{config.get('clip_sample_range', 1.0)} inside "
                          "each DDIM step, which the W2SD loop cannot reproduce; turn it off: "
                          + FIX.format("clip_sample=False"))


def schedule_from_diffusers(config: Mapping, num_steps: int) -> DiscreteSchedule:
    """The schedule `DDIMScheduler.from_config(config)` runs for `num_steps` (config: e.g. `pipe.scheduler.config` of
    any scheduler class): its float32 ā table (beta_schedule, trained_betas, rescale_betas_zero_snr), its timesteps
    (timestep_spacing, steps_offset) and its last level (set_alpha_to_one); clip_sample and thresholding as
    `check_step_options` says."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(f"num_steps={num_steps!r} must be a positive integer (the number of sampling steps T)")
    ddim = ddim_scheduler(config)
    check_step_options(config)
    n = ddim.config.num_train_timesteps
    if num_steps > n:
        raise ConfigError(f"num_steps={num_steps} exceeds num_train_timesteps={n}; lower T")
    ddim.set_timesteps(num_steps)
    timesteps = tuple(int(t) for t in ddim.timesteps)
    if timesteps[0] >= n:
        raise ConfigError(f"steps_offset={ddim.config.steps_offset} pushes the first timestep to {timesteps[0]} >= "
                          f"{n}; lower T or use " + FIX.format("timestep_spacing='trailing'"))
    alphas_cumprod = ddim.alphas_cumprod.to(torch.float64)
    schedule = DiscreteSchedule(alphas_cumprod, timesteps, float(ddim.final_alpha_cumprod), n // num_steps)
    # DDIMScheduler.step moves t to t − N//T, which is the next timestep only for leading (and evenly divided
    # trailing) spacing; the W2SD loop runs on the timestep grid, so it refuses a chain it cannot follow
    for i, t in enumerate(timesteps):
        lands = schedule.alpha_bar(t - schedule.step_ratio)
        if lands != schedule.level_alpha_bar(i + 1):
            spacing = ddim.config.timestep_spacing
            raise ConfigError(f"timestep_spacing={spacing!r} with T={num_steps}: DDIMScheduler steps t={t} to "
                              f"t−{schedule.step_ratio}, off its own grid {list(timesteps[:4])}…, which the W2SD loop "
                              "cannot follow; use " + FIX.format("timestep_spacing='leading'") +
                              (f" or a T that divides {n}" if spacing == "trailing" else ""))
    if min(schedule.level_alpha_bar(i) for i in range(num_steps)) <= 0.0:
        raise ConfigError(f"rescale_betas_zero_snr=True with timestep_spacing={ddim.config.timestep_spacing!r} "
                          f"starts at t={timesteps[0]} where ā = 0 and the ε-form DDIM step is undefined; use "
                          + FIX.format("timestep_spacing='leading'"))
    return schedule


# -- rectified flow -----------------------------------------------------------------------------------------------

TIME_SHIFT_TYPES = ("exponential", "linear")
FLOW_OPTIONS = ("num_train_timesteps", "shift", "use_dynamic_shifting", "base_shift", "max_shift",
                "base_image_seq_len", "max_image_seq_len", "invert_sigmas", "shift_terminal", "time_shift_type")
# options of FlowMatchEulerDiscreteScheduler that change the sampler itself, not the σ grid: refused, not ignored
FLOW_UNSUPPORTED = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "stochastic_sampling")


@dataclass(frozen=True)
class FlowSchedule:
    """Rectified-flow sampling grid σ_0 > … > σ_T (x_σ = (1 − σ)·x₀ + σ·ε) with its networks' timesteps σ·N.

    `sigmas` has T + 1 entries, the terminal one (0, or 1 with invert_sigmas) included; `timesteps` are the float
    values diffusers' FlowMatchEulerDiscreteScheduler hands the transformer. Networks on this grid predict the
    velocity v = ε − x₀, so a DDIM step between its levels is the Euler step x + (σ_next − σ)·v."""

    sigmas: tuple[float, ...]
    timesteps: tuple[float, ...]
    num_train_timesteps: int = 1000

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def prediction(self) -> Prediction:
        return "velocity"

    def level(self, i: int) -> Level:
        return Level.flow(self.sigmas[i])

    def level_at(self, t: float) -> Level:
        return Level.flow(float(t) / self.num_train_timesteps)

    def sigma(self, i: int) -> float:
        """VE-equivalent noise level σ/α of sampling level i (∞ at σ = 1)."""
        level = self.level(i)
        return math.inf if level.alpha == 0 else level.sigma / level.alpha


def _time_shift(kind: str, mu: float, sigmas: np.ndarray) -> np.ndarray:
    """Resolution-dependent shift of FluxPipeline's grid (diffusers' time_shift with σ = 1)."""
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1) ** 1.0)
    return mu / (mu + (1 / sigmas - 1) ** 1.0)


def make_flow_schedule(
    num_steps: int,
    *,
    shift: float = 1.0,
    use_dynamic_shifting: bool = False,
    mu: float | None = None,
    time_shift_type: str = "exponential",
    invert_sigmas: bool = False,
    shift_terminal: float | None = None,
    num_train_timesteps: int = 1000,
    sigmas: Sequence[float] | None = None,
) -> FlowSchedule:
    """The grid `FlowMatchEulerDiscreteScheduler(...).set_timesteps(num_steps, sigmas=sigmas, mu=mu)` builds, in its
    float32 arithmetic: σ evenly spaced in training time from σ_max to σ_min (or the given `sigmas`, as FluxPipeline
    passes linspace(1, 1/T, T)), shifted by `shift` (σ' = sσ/(1 + (s − 1)σ)) or, with `use_dynamic_shifting`, by μ,
    optionally stretched to end at `shift_terminal`, with the terminal σ appended."""
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ConfigError(f"num_steps={num_steps!r} must be a positive integer (the number of sampling steps T)")
    if not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
        raise ConfigError(f"shift={shift!r} must be a finite number > 0 (1 = no shift; SD3/Flux ship 3.0)")
    if time_shift_type not in TIME_SHIFT_TYPES:
        raise ConfigError(f"time_shift_type={time_shift_type!r} is not one of {TIME_SHIFT_TYPES}")
    if use_dynamic_shifting and (mu is None or not math.isfinite(mu)):
        raise ConfigError(f"use_dynamic_shifting=True needs a finite mu (got {mu!r}); FluxPipeline computes it from "
                          "the image size: w2sd.schedule.flow_shift_mu(image_seq_len, scheduler_config)")
    if shift_terminal is not None and not 0 <= shift_terminal < 1:
        raise ConfigError(f"shift_terminal={shift_terminal!r} must be in [0, 1) or null")
    n = num_train_timesteps
    if sigmas is None:
        # the scheduler's training grid (float32, shifted unless dynamic) gives σ_max and σ_min
        train = torch.from_numpy(np.linspace(1, n, n, dtype=np.float32)[::-1].copy()) / n
        if not use_dynamic_shifting:
            train = shift * train / (1 + (shift - 1) * train)
        grid = np.linspace(train[0].item() * n, train[-1].item() * n, num_steps) / n
    else:
        grid = np.array(sigmas).astype(np.float32)
        if grid.ndim != 1 or len(grid) != num_steps or not np.all(np.isfinite(grid)) or \
                not np.all((grid > 0) & (grid <= 1)) or np.any(np.diff(grid) >= 0):
            raise ConfigError(f"sigmas={list(sigmas)} must be {num_steps} decreasing values in (0, 1]")
    grid = _time_shift(time_shift_type, mu, grid) if use_dynamic_shifting else shift * grid / (1 + (shift - 1) * grid)
    if shift_terminal:
        one_minus = 1 - grid
        grid = 1 - one_minus / (one_minus[-1] / (1 - shift_terminal))
    sig = torch.from_numpy(np.asarray(grid)).to(torch.float32)
    timesteps = sig * n
    if invert_sigmas:
        sig = 1.0 - sig
        timesteps = sig * n
        sig = torch.cat([sig, torch.ones(1)])
    else:
        sig = torch.cat([sig, torch.zeros(1)])
    return FlowSchedule(tuple(float(s) for s in sig), tuple(float(t) for t in timesteps), n)


def flow_shift_mu(image_seq_len: int, config: Mapping) -> float:
    """μ of the resolution-dependent shift, as FluxPipeline computes it: linear in the packed image sequence length
    from (base_image_seq_len, base_shift) to (max_image_seq_len, max_shift)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + (base_shift - slope * base_len)


def flow_schedule_from_diffusers(config: Mapping, num_steps: int, *, mu: float | None = None,
                                 sigmas: Sequence[float] | None = None) -> FlowSchedule:
    """The grid a pipeline's FlowMatchEulerDiscreteScheduler (config: `pipe.scheduler.config`) runs for `num_steps`;
    options that change the sampler rather than the grid (Karras/exponential/beta σ, stochastic sampling) are
    refused in one line, since the W2SD loop is the deterministic Euler/DDIM one."""
    for key in FLOW_UNSUPPORTED:
        if config.get(key, False):
            raise ConfigError(f"scheduler {key}=True is not supported on the flow grid; turn it off: "
                              + FIX.format(f"{key}=False"))
    options = {k: config[k] for k in FLOW_OPTIONS if k in config and k not in
               ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len")}
    return make_flow_schedule(num_steps, mu=mu, sigmas=sigmas, **options)


SCHEDULE_KINDS = ("vp", "flow")


def schedule_from_config(num_steps: int, options: Mapping,
                         key: str = "sampler.schedule") -> DiscreteSchedule | FlowSchedule:
    """The grid a `sampler.schedule` config names: `kind: flow` is a FlowMatchEuler grid (`make_flow_schedule`), no
    kind (or `vp`) a DDPM-beta VP schedule (`make_schedule`)."""
    options = dict(options)
    kind = options.pop("kind", "vp")
    if kind not in SCHEDULE_KINDS:
        raise ConfigError(f"{key}.kind={kind!r} is not one of {SCHEDULE_KINDS}")
    build = make_flow_schedule if kind == "flow" else make_schedule
    accepted = [p for p in inspect.signature(build).parameters if p != "num_steps"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"{key} has option(s) {unknown} that a {kind} schedule does not take; it takes {accepted} "
                          f"(pick the grid with sampler/schedule=ddpm_linear|flow_match)")
    return build(num_steps, **options)
