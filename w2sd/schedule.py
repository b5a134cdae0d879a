# Discrete variance-preserving noise schedules (DDPM betas) and diffusers-compatible timestep spacing.
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

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

    def level(self, i: int) -> float:
        """ā of sampling level i: i < T is timestep t_i, i == T is the clean end point."""
        return self.alpha_bar(self.timesteps[i]) if i < self.num_steps else self.final_alpha_cumprod

    def sigma(self, i: int) -> float:
        """VE-equivalent noise level sqrt((1-ā)/ā) of sampling level i."""
        a = self.level(i)
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
        if lands != schedule.level(i + 1):
            spacing = ddim.config.timestep_spacing
            raise ConfigError(f"timestep_spacing={spacing!r} with T={num_steps}: DDIMScheduler steps t={t} to "
                              f"t−{schedule.step_ratio}, off its own grid {list(timesteps[:4])}…, which the W2SD loop "
                              "cannot follow; use " + FIX.format("timestep_spacing='leading'") +
                              (f" or a T that divides {n}" if spacing == "trailing" else ""))
    if min(schedule.level(i) for i in range(num_steps)) <= 0.0:
        raise ConfigError(f"rescale_betas_zero_snr=True with timestep_spacing={ddim.config.timestep_spacing!r} "
                          f"starts at t={timesteps[0]} where ā = 0 and the ε-form DDIM step is undefined; use "
                          + FIX.format("timestep_spacing='leading'"))
    return schedule
