# Closed-form predictions of the paper's theory on the samplers' level pairs (VP/DDIM and rectified flow).
from __future__ import annotations

from w2sd.ddim import Level, Prediction


def reflection_coefficient(level_t: Level, level_next: Level, prediction: Prediction = "epsilon") -> float:
    """C in Theorem 1, x̃_t − x_t ≈ C·(∇log p_s − ∇log p_w)(x_t), for one exact-convention reflection over the
    interval level_t → level_next (α, σ; s = σ/α the VE-equivalent noise level).

    ε-models (VP): C = α_t·σ_t·(s_t − s_next), i.e. ā_t·s_t·(s_t − s_next). In VE coordinates y = x/√ā_t this is
    s_t(s_t − s_next) ≈ ½·d(s²): the paper's σ²Δt with the probability-flow ½ that its Eq. 1 drops (paper.md §1.1).
    Velocity models (flow): a reflection is x + (σ_t − σ_next)·(v_w − v_s) and v_w − v_s = (σ_t/α_t)·Δ1 at a
    point, so C = (σ_t − σ_next)·σ_t/α_t: the σ/(1 − σ) weight puts more of the move at high noise. Both agree to
    first order in the step. The approximation error is the paper's E_t (App. E.2): the inverting model is
    evaluated at the advanced latent, not at x_t.
    """
    if prediction == "velocity":
        return (level_t.sigma - level_next.sigma) * level_t.sigma / level_t.alpha
    s_t, s_next = level_t.sigma / level_t.alpha, level_next.sigma / level_next.alpha
    return level_t.alpha * level_t.sigma * (s_t - s_next)
