# The deterministic DDIM transfer between two noise levels: a denoising step or, run upward, an inversion step.
from __future__ import annotations

import math

import torch


def ddim_transfer(x: torch.Tensor, eps: torch.Tensor, alpha_bar_from: float, alpha_bar_to: float) -> torch.Tensor:
    """Move x from level ā_from to ā_to along the ε-prediction: x̂₀ = (x − √(1−ā_from)·ε)/√ā_from,
    x_to = √ā_to·x̂₀ + √(1−ā_to)·ε. With ā_to < ā_from this is a DDIM step, with ā_to > ā_from a DDIM
    inversion step; applying (a→b) then (b→a) with the same ε returns x exactly (up to float rounding)."""
    x0 = (x - math.sqrt(1.0 - alpha_bar_from) * eps) / math.sqrt(alpha_bar_from)
    return math.sqrt(alpha_bar_to) * x0 + math.sqrt(1.0 - alpha_bar_to) * eps


def renoise(x: torch.Tensor, noise: torch.Tensor, alpha_bar_from: float, alpha_bar_to: float) -> torch.Tensor:
    """Forward-diffuse x from level ā_from to the noisier ā_to with fresh Gaussian noise (q(x_to | x_from))."""
    ratio = alpha_bar_to / alpha_bar_from
    return math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * noise
