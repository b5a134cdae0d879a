# A tiny ε-prediction UNet for 8×8 digit images (2-D convs) or digit clips ((2+1)-D convs), class-conditional.
"""Class conditioning uses a learned embedding with one extra "null" entry (index = num_classes) that training
swaps in with probability `cond_dropout`, so one network gives both ε(x, t, c) and ε(x, t, ∅) for CFG. An
unconditional model is num_classes = 0 (only the null entry). Videos are [B, C, F, H, W]; their convolutions are
factorised into a spatial 1×3×3 and a temporal 3×1×1 kernel, which is what keeps a clip denoiser trainable on CPU;
`temporal_attention` adds AnimateDiff-style self-attention over the frame axis at the lowest resolution (mid
block), so every position there sees the whole clip's motion, not only its neighbouring frames. `scale_shift` makes
the time + class embedding scale and shift each block's normalised features (ADM's AdaGN) instead of only shifting
them; the clip net needs it (its frames were far from real ones with the shift alone)."""
from __future__ import annotations

import math

import torch
from torch import nn


def conv(dims: int, c_in: int, c_out: int) -> nn.Module:
    if dims == 2:
        return nn.Conv2d(c_in, c_out, 3, padding=1)
    return nn.Sequential(nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1)),
                         nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0)))


def timestep_embedding(t_frac: torch.Tensor, dim: int) -> torch.Tensor:
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), dim // 2, device=t_frac.device))
    angles = t_frac[:, None].float() * freqs[None] * 2 * math.pi
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, dims: int, c_in: int, c_out: int, emb_dim: int, scale_shift: bool = False) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), conv(dims, c_in, c_out)
        self.scale_shift = scale_shift
        self.emb = nn.Linear(emb_dim, 2 * c_out if scale_shift else c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), conv(dims, c_out, c_out)
        self.skip = nn.Identity() if c_in == c_out else (nn.Conv2d if dims == 2 else nn.Conv3d)(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        e = self.emb(emb).view(*emb.shape[:1], -1, *([1] * (x.dim() - 2)))
        if self.scale_shift:  # ADM's AdaGN: the embedding scales and shifts the normalised features
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(nn.functional.silu(h))
        return h + self.skip(x)


class TemporalAttention(nn.Module):
    """Multi-head self-attention across frames at each spatial position of a [B, C, F, H, W] map, with a learned
    frame-position embedding; the output projection starts at zero, so the block starts as the identity."""

    def __init__(self, channels: int, frames: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.position = nn.Parameter(torch.zeros(frames, channels))
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        nn.init.zeros_(self.attention.out_proj.weight)
        nn.init.zeros_(self.attention.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        seq = self.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, f, c) + self.position[:f]
        out = self.attention(seq, seq, seq, need_weights=False)[0]
        return x + out.reshape(b, h, w, f, c).permute(0, 4, 3, 1, 2)


class TinyUNet(nn.Module):
    """One ResBlock per resolution level, halving the spatial size (never the frame axis) between levels."""

    def __init__(self, dims: int = 2, channels: tuple[int, ...] = (32, 64), num_classes: int = 10,
                 emb_dim: int = 64, in_channels: int = 1, temporal_attention: int = 0,
                 scale_shift: bool = False) -> None:
        """temporal_attention: 0 = none, else the number of frames of a clip (dims = 3 only); scale_shift: the
        embedding scales and shifts each block's features (AdaGN) instead of only shifting them."""
        super().__init__()
        self.dims, self.num_classes, self.emb_dim = dims, num_classes, emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim)
        conv_nd = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv_in = conv_nd(in_channels, channels[0], 1)
        self.down = nn.ModuleList(ResBlock(dims, a, b, emb_dim, scale_shift)
                                  for a, b in zip((channels[0], *channels), channels))
        self.mid = ResBlock(dims, channels[-1], channels[-1], emb_dim, scale_shift)
        self.motion = TemporalAttention(channels[-1], temporal_attention) if temporal_attention else nn.Identity()
        rev = channels[::-1]  # up block j: previous output + its level's skip → the skip's width
        self.up = nn.ModuleList(ResBlock(dims, h_in + skip, skip, emb_dim, scale_shift)
                                for h_in, skip in zip((rev[0], *rev), rev))
        self.out = nn.Sequential(nn.GroupNorm(min(8, channels[0]), channels[0]), nn.SiLU(),
                                 conv_nd(channels[0], in_channels, 1))
        self.scale = (2, 2) if dims == 2 else (1, 2, 2)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, t_frac: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t_frac, self.emb_dim)) + self.class_emb(labels)
        pool = nn.functional.avg_pool2d if self.dims == 2 else nn.functional.avg_pool3d
        h, skips = self.conv_in(x), []
        for level, block in enumerate(self.down):
            if level > 0:
                h = pool(h, self.scale)
            h = block(h, emb)
            skips.append(h)
        h = self.motion(self.mid(h, emb))
        for level, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if level < len(self.up) - 1:
                h = nn.functional.interpolate(h, scale_factor=self.scale, mode="nearest")
        return self.out(h)
