# FID (through torchmetrics) and a seeded Inception Score of an image set (paper Table 3); injectable networks.
from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from w2sd.validation import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def reference_images(folder: str | Path) -> list[Path]:
    """Image files of a reference folder (recursive, sorted); refuses a missing or empty folder."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"distribution.reference_dir={folder} is not a folder; point it to the reference images "
                          "(e.g. the ImageNet validation set for Table 3's FID)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"distribution.reference_dir={folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


def inception_extractor(output: str, weights: str | None = None) -> nn.Module:
    """torchmetrics' FID Inception (torch-fidelity's pt_inception-2015-12-05) returning one named output.

    `output` is "2048" (FID features) or "logits_unbiased" (IS). torch-fidelity downloads the weights unless
    `weights` is a local file, so offline both the package and the file must be present.
    """
    fix = ("set distribution.inception_weights=<local pt_inception-2015-12-05-6726825d.pth> or inject "
           "distribution.extractor={_target_: <your nn.Module>}")
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=[output],
                                  feature_extractor_weights_path=weights)
    except ModuleNotFoundError:
        raise ConfigError("FID/IS default Inception needs torch-fidelity (not installed; it needs torchvision); "
                          + fix) from None
    except OSError as err:  # urllib's URLError (offline download) and a missing/corrupt weights file
        raise ConfigError(f"FID/IS Inception weights unavailable ({type(err).__name__}: {err}); " + fix) from None


def _uint8_batch(images: list[Image.Image], size: int | None) -> torch.Tensor:
    if size is not None:
        images = [im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC) for im in images]
    arrays = [np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images]
    if len({a.shape for a in arrays}) != 1:
        raise ConfigError(f"FID/IS images differ in size {sorted({a.shape[:2] for a in arrays})}; "
                          "set distribution.image_size=<side> to resize them all")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _feed(images: Iterable[Image.Image], batch_size: int, size: int | None, update, device) -> int:
    """Stream images through `update` in uint8 batches (a 50K set never sits in memory); returns the count."""
    it, count = iter(images), 0
    while batch := list(islice(it, batch_size)):
        update(_uint8_batch(batch, size).to(device))
        count += len(batch)
    return count


def fid(generated: Iterable[Image.Image], reference: Iterable[Image.Image], feature: int | nn.Module = 2048,
        batch_size: int = 50, image_size: int | None = None, device: str | torch.device = "cpu") -> float:
    """Fréchet distance of feature statistics (lower is better).

    `feature=2048` is the pytorch-fid Inception (torchmetrics needs `torch-fidelity`, which downloads it); any
    module mapping uint8 (N, 3, H, W) images to (N, d) features can be injected instead.
    """
    metric = FrechetInceptionDistance(feature=feature).to(device)
    n_ref = _feed(reference, batch_size, image_size, lambda b: metric.update(b, real=True), device)
    n_gen = _feed(generated, batch_size, image_size, lambda b: metric.update(b, real=False), device)
    if n_gen < 2 or n_ref < 2:
        raise ConfigError(f"FID needs >= 2 images per set, got {n_gen} generated, {n_ref} reference")
    return float(metric.compute())


@torch.no_grad()
def inception_score(images: Iterable[Image.Image], logits: Callable[[torch.Tensor], torch.Tensor], splits: int = 10,
                    batch_size: int = 50, image_size: int | None = None, device: str | torch.device = "cpu",
                    seed: int = 0) -> tuple[float, float]:
    """(mean, std over splits) of exp(E_x KL(p(y|x) ‖ p(y))), p = softmax(`logits`(uint8 (N, 3, H, W) images)).

    torchmetrics' InceptionScore shuffles with an unseeded randperm before splitting, so its value changes from run
    to run; here the shuffle is drawn from `seed`, otherwise the computation is the same (std with Bessel's
    correction over the splits).
    """
    chunks: list[torch.Tensor] = []
    n = _feed(images, batch_size, image_size, lambda b: chunks.append(logits(b).double().cpu()), device)
    if n < splits:
        raise ConfigError(f"Inception Score with splits={splits} needs >= {splits} images, got {n}")
    all_logits = torch.cat(chunks)[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    per_split = []
    for part in all_logits.chunk(splits, dim=0):
        log_p = part.log_softmax(dim=1)
        log_marginal = log_p.exp().mean(dim=0, keepdim=True).log()
        per_split.append((log_p.exp() * (log_p - log_marginal)).sum(dim=1).mean().exp())
    scores = torch.stack(per_split)
    return float(scores.mean()), float(scores.std()) if splits > 1 else 0.0
