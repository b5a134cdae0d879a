# Closed-form predictions of the paper's theory in the VP/DDIM parametrisation used by the samplers.
from __future__ import annotations

import math


def reflection_coefficient(alpha_bar_t: float, alpha_bar_next: float) -> float:
    """C in Theorem 1, x̃_t − x_t ≈ C·(∇log p_s − ∇log p_w)(x_t), for one exact-convention reflection over the
    DDIM interval ā_t → ā_next: C = ā_t·σ_t·(σ_t − σ_next) with σ = √((1−ā)/ā).

    In VE coordinates y = x/√ā_t this is σ_t(σ_t − σ_next) ≈ ½·d(σ²): the paper's σ²Δt with the probability-flow
    ½ that its Eq. 1 drops (paper.md §1.1). The approximation error is the paper's E_t (App. E.2): the inverting
    model is evaluated at the advanced latent, not at x_t.
    """
    sigma_t = math.sqrt((1.0 - alpha_bar_t) / alpha_bar_t)
    sigma_next = math.sqrt((1.0 - alpha_bar_next) / alpha_bar_next)
    return alpha_bar_t * sigma_t * (sigma_t - sigma_next)
