# Personalisation similarities of paper Table 2: CLIP-I and DINO (generated vs reference images), ×100.
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

from w2sd.evaluation.checkpoints import load_pretrained
from w2sd.evaluation.clip_backbone import image_embeddings, load_clip
from w2sd.evaluation.distribution import IMAGE_SUFFIXES
from w2sd.evaluation.scorer import Scorer
from w2sd.validation import ConfigError, check_choice

Embedder = Callable[[Sequence[Image.Image]], torch.Tensor]


def load_references(folder: str | Path) -> list[Image.Image]:
    paths = sorted(p for p in Path(folder).expanduser().glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"references={folder} holds no images; point it at the subject's reference photos")
    return [Image.open(p).convert("RGB") for p in paths]


def clip_embedder(model: str, device: torch.device, *, scorer: str) -> Embedder:
    """L2-normalised CLIP image embeddings (CLIP-I; VBench background consistency)."""
    net, processor = load_clip(model, None, scorer=scorer)
    net.to(device)
    return lambda images: image_embeddings(net, processor, images, device)


def dino_embedder(model: str, device: torch.device, *, scorer: str) -> Embedder:
    """L2-normalised CLS token of a self-supervised DINO ViT (DreamBooth DINO; VBench subject consistency)."""
    net = load_pretrained(AutoModel.from_pretrained, model, scorer=scorer, key="model", add_pooling_layer=False)
    net.eval().to(device)
    processor = load_pretrained(AutoImageProcessor.from_pretrained, model, scorer=scorer, key="model")

    def embed(images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"].to(device)
        return torch.nn.functional.normalize(net(pixel_values=pixels).last_hidden_state[:, 0], dim=-1)

    return embed


class ReferenceSimilarity(Scorer):
    """Mean cosine ×100 between each generated image and every reference image (DreamBooth protocol).

    The prompt is ignored. `backbone`: "clip" (CLIP-I) or "dino" (DINO, DreamBooth uses ViT-S/16).
    """

    def __init__(self, references: str, model: str, backbone: str, batch_size: int = 8,
                 device: str = "auto") -> None:
        super().__init__(batch_size, device)
        self.name = {"clip": "clip_i", "dino": "dino"}[check_choice("backbone", backbone, ("clip", "dino"))]
        reference_images = load_references(references)
        make = clip_embedder if backbone == "clip" else dino_embedder
        self.embed = make(model, self.device, scorer=self.name)
        with torch.no_grad():
            self.reference_embeddings = self.embed(reference_images)

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        return 100.0 * (self.embed(images) @ self.reference_embeddings.T).mean(dim=1)
