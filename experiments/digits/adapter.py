# Adapter from a TinyUNet to the core samplers' `eps(x, t)`: fixed per-sample labels, classifier-free guidance and
# the data-range clip of x̂₀ live here, so the samplers stay model-agnostic.
from __future__ import annotations

import torch

from experiments.digits.unet import TinyUNet
from w2sd.validation import ConfigError


class UNetEps:
    """ε(x, t) = ε_∅ + w·(ε_c − ε_∅) for the labels of the batch being sampled (diffusers' CFG convention: w = 1 is
    the plain conditional ε, w = 0 the unconditional one). Unconditional nets (or labels=None) always use ∅.
    One call is one NFE for the samplers even when w ∉ {0, 1} runs both branches in one batched pass.

    clip_x0: return the ε that is consistent with x̂₀ clamped to the data range [−1, 1] (diffusers' DDIM
    `clip_sample`). Without it the small clip net's x̂₀ runs off to ±15 and DDIM never recovers; applying it in the
    adapter keeps DDIM inversion exact (a transfer and its inverse still share one ε)."""

    def __init__(self, net: TinyUNet, alphas_cumprod: torch.Tensor, labels: torch.Tensor | None = None,
                 guidance: float = 1.0, clip_x0: bool = True) -> None:
        self.net, self.alphas_cumprod, self.guidance = net.eval(), alphas_cumprod.double(), float(guidance)
        self.labels = None if labels is None or net.num_classes == 0 else labels.long()
        self.clip_x0 = clip_x0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        eps = self.guided_eps(x.float(), t).to(x.dtype)
        if not self.clip_x0:
            return eps
        a = float(self.alphas_cumprod[t])
        x0 = ((x - (1 - a) ** 0.5 * eps) / a**0.5).clamp(-1.0, 1.0)
        return (x - a**0.5 * x0) / (1 - a) ** 0.5

    def guided_eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        batch = x.shape[0]
        if self.labels is not None and batch != self.labels.shape[0]:
            raise ConfigError(f"a batch of {batch} latents for {self.labels.shape[0]} labels: the labels are fixed "
                              f"per sample, so samplers that evaluate part of the batch (adaptive reflection's "
                              f"`threshold`) cannot be used with class-conditional digits nets")
        t_frac = torch.full((batch,), t / self.alphas_cumprod.shape[0], dtype=torch.float32)
        null = torch.full((batch,), self.net.null_class, dtype=torch.long)
        if self.labels is None or self.guidance == 0.0:
            return self.net(x, t_frac, null)
        if self.guidance == 1.0:
            return self.net(x, t_frac, self.labels)
        eps_c, eps_u = self.net(torch.cat([x, x]), torch.cat([t_frac, t_frac]), torch.cat([self.labels, null])).chunk(2)
        return eps_u + self.guidance * (eps_c - eps_u)
