# Difference guidance read on the advanced latent: the first-order picture of one W2SD reflection (issue 14 part 1).
"""One W2SD level moves x_t to x̃ = x + (B/A)·(ε_s(x_t) − ε_w(x')), with x' = A·x_t + B·ε_s(x_t) the strong DDIM
step and A, B its coefficients, then takes the strong step from x̃. Replacing ε_s(x̃) by ε_s(x_t) in that step
(first order in the gap) gives DDIM on ε_s(x_t) + (ε_s(x_t) − ε_w(x', t)): difference guidance whose weak model is
read on the advanced latent. `sample_advanced_guidance` runs that rule with weight w on the levels W2SD (λ = T − 1)
reflects, at NFE 2T − 1 (W2SD: 3T − 2), so the gap between it and W2SD is what the latent move itself buys.

It is registered in w2sd.methods.SAMPLERS as `advanced_guidance` when this module is imported (the digits studies
import it), the documented way to add a sampler; core may adopt it into w2sd.sampling."""
from __future__ import annotations

import torch

from w2sd.ddim import ddim_transfer
from w2sd.methods import SAMPLERS
from w2sd.sampling import Callback, Denoiser, NFECounter, SampleOutput, ddim_loop
from w2sd.schedule import DiscreteSchedule


@torch.no_grad()
def sample_advanced_guidance(
    strong: Denoiser,
    weak: Denoiser,
    x: torch.Tensor,
    schedule: DiscreteSchedule,
    *,
    w: float = 1.0,
    extra_args: dict | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    """DDIM on ε_s(x_t) + w·(ε_s(x_t) − ε_w(x', t)), x' the strong DDIM step from x_t, on every level but the last
    (which W2SD never reflects either). NFE = 2T − 1."""
    counter = NFECounter()
    strong_eps, weak_eps = counter.wrap(strong, extra_args), counter.wrap(weak, extra_args)
    level_of = {t: i for i, t in enumerate(schedule.timesteps)}

    def guided(x_t: torch.Tensor, t: int) -> torch.Tensor:
        i = level_of[t]
        e_s = strong_eps(x_t, t)
        if i == schedule.num_steps - 1:  # W2SD never reflects the final step (λ ≤ T − 1): plain strong ε there
            return e_s
        x_adv = ddim_transfer(x_t, e_s, schedule.level(i), schedule.level(i + 1))
        return e_s + w * (e_s - weak_eps(x_adv, t))

    return counter.output(ddim_loop(guided, x, schedule, callback=callback))


SAMPLERS.setdefault("advanced_guidance", sample_advanced_guidance)
