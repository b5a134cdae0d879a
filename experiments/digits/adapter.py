# Adapter from a TinyUNet to the core samplers' denoiser `model(x, t)` (ε or flow velocity): fixed per-sample labels,
# classifier-free guidance and the data-range clip of x̂₀ live here, so the samplers stay model-agnostic.
from __future__ import annotations

import torch

from experiments.digits.unet import TinyUNet
from w2sd.ddim import split_prediction
from w2sd.schedule import DiscreteSchedule, FlowSchedule
from w2sd.validation import ConfigError


class UNetEps:
    """The net's prediction on the schedule it was trained for — ε on a VP `DiscreteSchedule`, the velocity
    v = ε − x₀ on a `FlowSchedule` — guided as ε_∅ + w·(ε_c − ε_∅) (or the same in v) for the labels of the batch
    being sampled (diffusers' CFG convention: w = 1 is the plain conditional prediction, w = 0 the unconditional
    one). Unconditional nets (or labels=None) always use ∅. One call is one NFE for the samplers even when
    w ∉ {0, 1} runs both branches in one batched pass.

    clip_x0: return the prediction that is consistent with x̂₀ clamped to the data range [−1, 1] at the level of the
    queried timestep (diffusers' DDIM `clip_sample`). Without it the small clip net's x̂₀ runs off to ±15 and DDIM
    never recovers; applying it in the adapter keeps DDIM inversion exact (a transfer and its inverse still share
    one prediction)."""

    def __init__(self, net: TinyUNet, schedule: DiscreteSchedule | FlowSchedule, labels: torch.Tensor | None = None,
                 guidance: float = 1.0, clip_x0: bool = True) -> None:
        self.net, self.schedule, self.guidance = net.eval(), schedule, float(guidance)
        self.labels = None if labels is None or net.num_classes == 0 else labels.long()
        self.clip_x0 = clip_x0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        out = self.guided_eps(x.float(), t).to(x.dtype)
        if not self.clip_x0:
            return out
        if isinstance(self.schedule, DiscreteSchedule):  # in ā, as diffusers' DDIM clip_sample computes it
            a = self.schedule.alpha_bar(t)
            x0 = ((x - (1 - a) ** 0.5 * out) / a**0.5).clamp(-1.0, 1.0)
            return (x - a**0.5 * x0) / (1 - a) ** 0.5
        level = self.schedule.level_at(t)  # x = αx̂₀ + σε̂ with the clamped x̂₀, v = ε̂ − x̂₀
        x0 = split_prediction(x, out, level, "velocity")[0].clamp(-1.0, 1.0)
        return (x - (level.alpha + level.sigma) * x0) / level.sigma

    def guided_eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        batch = x.shape[0]
        if self.labels is not None and batch != self.labels.shape[0]:
            raise ConfigError(f"a batch of {batch} latents for {self.labels.shape[0]} labels: the labels are fixed "
                              f"per sample, so samplers that evaluate part of the batch (adaptive reflection's "
                              f"`threshold`) cannot be used with class-conditional digits nets")
        t_frac = torch.full((batch,), t / self.schedule.num_train_timesteps, dtype=torch.float32)
        null = torch.full((batch,), self.net.null_class, dtype=torch.long)
        if self.labels is None or self.guidance == 0.0:
            return self.net(x, t_frac, null)
        if self.guidance == 1.0:
            return self.net(x, t_frac, self.labels)
        eps_c, eps_u = self.net(torch.cat([x, x]), torch.cat([t_frac, t_frac]), torch.cat([self.labels, null])).chunk(2)
        return eps_u + self.guidance * (eps_c - eps_u)
