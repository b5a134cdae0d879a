# Discrete variance-preserving noise schedules (DDPM betas) and diffusers-compatible timestep spacing.
from __future__ import annotations

import math
from dataclasses import dataclass

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


def schedule_from_diffusers(config: dict, num_steps: int) -> DiscreteSchedule:
    """Build the schedule a diffusers DDIM-family scheduler config describes (e.g. `pipe.scheduler.config`)."""
    if config.get("trained_betas") is not None:
        raise ConfigError("schedulers with explicit trained_betas are not supported; use a beta_schedule config")
    return make_schedule(
        num_steps,
        beta_schedule=config.get("beta_schedule", "linear"),
        beta_start=config.get("beta_start", 0.0001),
        beta_end=config.get("beta_end", 0.02),
        num_train_timesteps=config.get("num_train_timesteps", 1000),
        spacing=config.get("timestep_spacing", "leading"),
        steps_offset=config.get("steps_offset", 0),
        set_alpha_to_one=config.get("set_alpha_to_one", True),
    )
