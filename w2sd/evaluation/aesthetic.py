# LAION improved aesthetic predictor v2: an MLP on L2-normalised CLIP ViT-L/14 image embeddings (0–10 scale).
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from w2sd.evaluation.checkpoints import MissingCheckpoint, resolve_file
from w2sd.evaluation.clip_backbone import load_clip, pixel_embeddings
from w2sd.evaluation.preprocess import openai_clip_pixels
from w2sd.evaluation.reward_head import RewardMLP
from w2sd.evaluation.scorer import Scorer

AESTHETIC_CLIP = "openai/clip-vit-large-patch14"
# `sac+logos+ava1-l14-linearMSE.pth` (3.7 MB), mirrored on the Hub under this name (used by TRL's DDPO example).
AESTHETIC_HEAD_REPO, AESTHETIC_HEAD_FILE = "trl-lib/ddpo-aesthetic-predictor", "aesthetic-model.pth"


class AestheticScorer(Scorer):
    """The prompt is ignored. Hand-written: the PyPI wrappers fetch the head from GitHub at run time."""

    name = "aesthetic"

    def __init__(self, clip: str = AESTHETIC_CLIP, head: str | None = None, batch_size: int = 8,
                 device: str = "auto") -> None:
        super().__init__(batch_size, device)
        self.model, _ = load_clip(clip, None, scorer=self.name, model_key="clip")
        path = resolve_file(head, AESTHETIC_HEAD_REPO, AESTHETIC_HEAD_FILE, scorer=self.name, key="head")
        try:
            self.head = RewardMLP.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (KeyError, RuntimeError) as err:
            raise MissingCheckpoint(f"{self.name}: {path} is not a LAION aesthetic MLP head ({err})") from err
        if self.head.layers[0].in_features != self.model.config.projection_dim:
            raise MissingCheckpoint(f"{self.name}: head expects {self.head.layers[0].in_features}-d embeddings but "
                                    f"{clip} gives {self.model.config.projection_dim}-d; use CLIP ViT-L/14")
        self.model.to(self.device)
        self.head.to(self.device)

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        # simple_inference.py preprocesses with OpenAI CLIP's torchvision transform, not the transformers processor.
        pixels = openai_clip_pixels(images, self.model.config.vision_config.image_size)
        emb = pixel_embeddings(self.model, pixels, self.device)
        return self.head(emb.to(self.head.layers[0].weight.dtype))
