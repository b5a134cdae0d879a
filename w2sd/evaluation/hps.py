# HPS v2 / v2.1 (Wu et al. 2023): a fine-tuned open_clip ViT-H-14; score = 100 · cos(image, prompt).
from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from transformers import AutoProcessor, CLIPConfig, CLIPModel

from w2sd.evaluation.checkpoints import MissingCheckpoint, load_pretrained, resolve_file
from w2sd.evaluation.clip_backbone import openclip_to_transformers, pixel_embeddings, text_embeddings
from w2sd.evaluation.preprocess import hps_pixels
from w2sd.evaluation.scorer import Scorer
from w2sd.validation import check_choice

HPS_REPO = "xswu/HPSv2"
# The released W2SD evaluate.py scores v2.1; the paper writes "HPS v2" (paper.md §10.4), so both are selectable.
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
# Architecture and tokenizer of open_clip ViT-H-14 (the base HPS was fine-tuned from).
HPS_BASE = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class HPSv2Scorer(Scorer):
    """Like `hpsv2.score(..., hps_version=version)`, reported ×100 as in the paper's tables.

    The hpsv2 wheel is not used: it pins pytest==7.2.0 and protobuf<4 and needs torchvision (broken with the
    pinned CPU torch); the checkpoint holds the whole open_clip model, so we rename it onto transformers' CLIP.
    """

    def __init__(self, version: str = "v2.1", checkpoint: str | None = None, base: str = HPS_BASE,
                 batch_size: int = 8, device: str = "auto") -> None:
        super().__init__(batch_size, device)
        self.version = check_choice("scorer.version", version, tuple(HPS_FILES))
        self.name = f"hps_{version.replace('.', '')}"
        path = resolve_file(checkpoint, HPS_REPO, HPS_FILES[version], scorer=self.name, key="checkpoint")
        config = load_pretrained(CLIPConfig.from_pretrained, base, scorer=self.name, key="base")
        self.processor = load_pretrained(AutoProcessor.from_pretrained, base, scorer=self.name, key="base")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        try:
            weights = openclip_to_transformers(state)
        except KeyError as err:
            raise MissingCheckpoint(f"{self.name}: {path} is not an open_clip CLIP checkpoint (no {err})") from err
        self.model = CLIPModel(config)
        self.model.load_state_dict(weights, strict=False)  # position_ids buffers are not in the checkpoint
        missing = [k for k in self.model.state_dict() if k not in weights and "position_ids" not in k]
        if missing:
            raise MissingCheckpoint(f"{self.name}: {path} lacks {len(missing)} weights, e.g. {missing[0]}")
        self.model.eval().to(self.device)

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        # hpsv2 pads the whole image into view (longest side → 224), unlike CLIP's shortest-side centre crop.
        pixels = hps_pixels(images, self.model.config.vision_config.image_size)
        img = pixel_embeddings(self.model, pixels, self.device)
        txt = text_embeddings(self.model, self.processor, prompts, self.device)
        return 100.0 * (img * txt).sum(-1)
