# FID and Inception Score of an image set (paper Table 3) through torchmetrics, with an injectable feature network.
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from w2sd.validation import ConfigError


def _uint8_batch(images: Sequence[Image.Image]) -> torch.Tensor:
    arrays = [np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images]
    if len({a.shape for a in arrays}) != 1:
        raise ConfigError("FID/IS images must share one size; resize them first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _batches(images: Sequence[Image.Image], size: int):
    for start in range(0, len(images), size):
        yield _uint8_batch(images[start:start + size])


def fid(generated: Sequence[Image.Image], reference: Sequence[Image.Image], feature: int | nn.Module = 2048,
        batch_size: int = 50) -> float:
    """Fréchet distance of feature statistics (lower is better).

    `feature=2048` is the pytorch-fid Inception (torchmetrics needs `torch-fidelity`, which downloads it); any
    module mapping uint8 (N, 3, H, W) images to (N, d) features can be injected instead.
    """
    if len(generated) < 2 or len(reference) < 2:
        raise ConfigError(f"FID needs >= 2 images per set, got {len(generated)} generated, {len(reference)} reference")
    metric = FrechetInceptionDistance(feature=feature)
    for batch in _batches(reference, batch_size):
        metric.update(batch, real=True)
    for batch in _batches(generated, batch_size):
        metric.update(batch, real=False)
    return float(metric.compute())


def inception_score(images: Sequence[Image.Image], feature: str | nn.Module = "logits_unbiased", splits: int = 10,
                    batch_size: int = 50) -> tuple[float, float]:
    """(mean, std over splits) of exp(E KL(p(y|x) ‖ p(y))); an injected module must return class logits."""
    if len(images) < splits:
        raise ConfigError(f"Inception Score with splits={splits} needs >= {splits} images, got {len(images)}")
    metric = InceptionScore(feature=feature, splits=splits)
    for batch in _batches(images, batch_size):
        metric.update(batch)
    mean, std = metric.compute()
    return float(mean), float(std)
