# The one scorer interface: a batch of images and their prompts in, one finite score per image out.
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from w2sd.validation import ConfigError

# OpenAI CLIP pixel statistics, shared by CLIP, HPS, PickScore, the LAION head and ImageReward's BLIP.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Scorer(ABC):
    """Per-sample scores of (image, prompt) pairs; higher is better unless `higher_is_better` is False.

    `preference_logits`: the scores are logits of a Bradley–Terry preference model (PickScore, HPS), so a two-way
    softmax between two images of the same prompt is the model's preference probability (see preference.py).
    """

    name: str = "score"
    higher_is_better: bool = True
    preference_logits: bool = False

    def __init__(self, batch_size: int = 8, device: str = "auto") -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        self.batch_size = batch_size
        self.device = pick_device(device)

    @abstractmethod
    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """Scores of one batch, shape (len(images),)."""

    @torch.no_grad()
    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> np.ndarray:
        if len(images) != len(prompts):
            raise ConfigError(f"{self.name}: {len(images)} images but {len(prompts)} prompts; one prompt per image")
        chunks = []
        for start in range(0, len(images), self.batch_size):
            stop = start + self.batch_size
            rgb = [im.convert("RGB") for im in images[start:stop]]
            chunks.append(self.score_batch(rgb, list(prompts[start:stop])).detach().float().cpu().reshape(-1))
        scores = torch.cat(chunks).numpy().astype(np.float64) if chunks else np.zeros(0)
        if not np.all(np.isfinite(scores)):
            raise ConfigError(f"{self.name}: non-finite scores for {int((~np.isfinite(scores)).sum())} images; "
                              "check the checkpoint and the image files")
        return scores
