# The deterministic DDIM transfer between two noise levels: a denoising step or, run upward, an inversion step.
from __future__ import annotations

import math

import torch


def predict_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """The clean sample the ε-prediction implies at level ā: x̂₀ = (x − √(1−ā)·ε)/√ā."""
    return (x - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)


def from_x0(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """Put x̂₀ back at level ā along the same ε: √ā·x̂₀ + √(1−ā)·ε."""
    return math.sqrt(alpha_bar) * x0 + math.sqrt(1.0 - alpha_bar) * eps


def ddim_transfer(x: torch.Tensor, eps: torch.Tensor, alpha_bar_from: float, alpha_bar_to: float) -> torch.Tensor:
    """Move x from level ā_from to ā_to along the ε-prediction (x̂₀ at ā_from, re-noised to ā_to). With
    ā_to < ā_from this is a DDIM step, with ā_to > ā_from a DDIM inversion step; applying (a→b) then (b→a) with
    the same ε returns x exactly (up to float rounding)."""
    return from_x0(predict_x0(x, eps, alpha_bar_from), eps, alpha_bar_to)


def renoise(x: torch.Tensor, noise: torch.Tensor, alpha_bar_from: float, alpha_bar_to: float) -> torch.Tensor:
    """Forward-diffuse x from level ā_from to the noisier ā_to with fresh Gaussian noise (q(x_to | x_from))."""
    ratio = alpha_bar_to / alpha_bar_from
    return math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * noise
