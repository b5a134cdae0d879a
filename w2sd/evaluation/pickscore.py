# PickScore (Kirstain et al. 2023): a CLIP-H fine-tuned on Pick-a-Pic; score = exp(logit_scale) · cos(image, prompt).
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from w2sd.evaluation.clip_backbone import image_embeddings, load_clip, text_embeddings
from w2sd.evaluation.scorer import Scorer

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScoreScorer(Scorer):
    """No PyPI package exists; this is the model card's recipe on transformers (as W2SD's eval_pickscore.py)."""

    name = "pickscore"
    preference_logits = True  # the scores are the logits of PickScore's two-image softmax

    def __init__(self, model: str = PICKSCORE_MODEL, processor: str = PICKSCORE_PROCESSOR, batch_size: int = 8,
                 device: str = "auto") -> None:
        super().__init__(batch_size, device)
        self.model, self.processor = load_clip(model, processor, scorer=self.name)
        self.model.to(self.device)

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        img = image_embeddings(self.model, self.processor, images, self.device)
        txt = text_embeddings(self.model, self.processor, prompts, self.device)
        return self.model.logit_scale.exp() * (img * txt).sum(-1)
