# Pixel preprocessing of the original scorers, reproduced exactly without torchvision (which cannot load here).
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from w2sd.evaluation.scorer import CLIP_MEAN, CLIP_STD


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor: uint8 HWC → float CHW in [0, 1] (divided by 255, not multiplied by 1/255)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def openai_clip_pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """OpenAI CLIP's `_transform` (also ImageReward's): Resize(size, bicubic) of the shorter side on the PIL image,
    CenterCrop(size) with torchvision's round-half-even offsets, ToTensor, Normalize. Returns (N, 3, size, size)."""
    out = []
    for image in images:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)  # torchvision truncates the longer side
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        resized = image.convert("RGB").resize((new_w, new_h), Image.Resampling.BICUBIC)
        top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
        out.append(_normalise(_to_tensor(resized)[:, top:top + size, left:left + size]))
    return torch.stack(out)


def hps_pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """hpsv2's validation transform (`light_augmentation=True` → ResizeMaxSize): ToTensor first, then the LONGER side
    resized to `size` on the float tensor (bicubic, antialiased, not clamped), zero-padded to a square (pad before
    Normalize, so the border is −mean/std), Normalize. Returns (N, 3, size, size).

    hpsv2 skips resize and pad when the longer side already equals `size`; a non-square image then cannot enter its
    ViT, so padding it here only covers inputs the original rejects.
    """
    out = []
    for image in images:
        pixels = _to_tensor(image)
        h, w = pixels.shape[1:]
        scale = size / float(max(h, w))
        new_h, new_w = round(h * scale), round(w * scale)
        if (new_h, new_w) != (h, w):
            pixels = torch.nn.functional.interpolate(pixels[None], size=(new_h, new_w), mode="bicubic",
                                                     align_corners=False, antialias=True)[0]
        pad_h, pad_w = size - new_h, size - new_w
        pixels = torch.nn.functional.pad(pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        out.append(_normalise(pixels))
    return torch.stack(out)
