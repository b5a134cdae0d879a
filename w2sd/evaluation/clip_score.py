# CLIPScore (Hessel et al. 2021) per image through torchmetrics: max(100 · cos(image, prompt), 0).
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torchmetrics.multimodal import CLIPScore

from w2sd.evaluation.clip_backbone import features_tensor, load_clip
from w2sd.evaluation.scorer import Scorer


class TensorFeatures(torch.nn.Module):
    """torchmetrics 1.9 expects `get_*_features` to return tensors; transformers ≥ 5 returns output objects."""

    def __init__(self, clip: torch.nn.Module) -> None:
        super().__init__()
        self.clip = clip
        self.config = clip.config

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return features_tensor(self.clip.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return features_tensor(self.clip.get_text_features(*args, **kwargs))


class CLIPScoreScorer(Scorer):
    """torchmetrics' CLIPScore, fed our loader (it only accepts `openai/...` ids itself, not local folders).

    With `name: clip_t` this is the DreamBooth CLIP-T column of paper Table 2 (image–prompt similarity ×100).
    """

    def __init__(self, model: str = "openai/clip-vit-large-patch14", processor: str | None = None,
                 name: str = "clip_score", batch_size: int = 8, device: str = "auto") -> None:
        super().__init__(batch_size, device)
        self.name = name
        net, proc = load_clip(model, processor, scorer=name)
        self.metric = CLIPScore(model_name_or_path=lambda: (TensorFeatures(net), proc)).to(self.device)

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        # torchmetrics averages over what it is given, so one image per call gives the per-image score.
        scores = []
        for image, prompt in zip(images, prompts):
            pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).to(self.device)
            scores.append(self.metric(pixels, prompt))
            self.metric.reset()
        return torch.stack(scores)
