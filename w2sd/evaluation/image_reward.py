# ImageReward v1.0 (Xu et al. 2023): BLIP ViT-L image encoder + cross-attending BERT + MLP head, standardised.
from __future__ import annotations

import json
import re
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BertTokenizer, BlipTextConfig, BlipVisionConfig
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from w2sd.evaluation.checkpoints import MissingCheckpoint, load_pretrained, resolve_file
from w2sd.evaluation.preprocess import openai_clip_pixels
from w2sd.evaluation.reward_head import RewardMLP
from w2sd.evaluation.scorer import Scorer

IMAGE_REWARD_REPO = "THUDM/ImageReward"
# Standardisation constants of ImageReward-v1.0 (ImageReward.py): reward = (mlp(features) − mean) / std.
REWARD_MEAN, REWARD_STD = 0.16717362830052426, 1.0333394966054072
# BLIP "large" ViT used by ImageReward (vit='large', image_size=224).
BLIP_LARGE_VIT = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                  "intermediate_size": 4096, "image_size": 224, "patch_size": 16}


def blip_to_transformers(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Original BLIP ViT names (`visual_encoder.blocks.3.attn.qkv`) → transformers' BlipVisionModel names."""
    rules = [(r"^blocks\.", "encoder.layers."), (r"\.attn\.proj\.", ".self_attn.projection."),
             (r"\.attn\.", ".self_attn."), (r"\.norm1\.", ".layer_norm1."), (r"\.norm2\.", ".layer_norm2."),
             (r"^norm\.", "post_layernorm."), (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
             (r"^pos_embed$", "embeddings.position_embedding"), (r"^cls_token$", "embeddings.class_embedding")]
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            for pattern, repl in rules:
                name = re.sub(pattern, repl, name)
            out[name] = value
    return out


def _load_strict(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str, path: object) -> None:
    # position_ids are buffers (saved by old BERT code, rebuilt by transformers): not weights.
    weights = {k: v for k, v in weights.items() if not k.endswith("position_ids")}
    missing, unexpected = module.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise MissingCheckpoint(f"image_reward: {path} does not fit the {what} "
                                f"(missing {missing[:2]}, unexpected {unexpected[:2]})")


class ImageRewardScorer(Scorer):
    """Same forward as `ImageReward.score` on transformers' BLIP modules.

    The image-reward wheel is not used: it pins timm==0.6.13 and fairscale and needs torchvision (broken with
    the pinned CPU torch); its BLIP is the original Salesforce code, whose weights map 1:1 onto transformers'.
    """

    name = "image_reward"

    def __init__(self, checkpoint: str | None = None, med_config: str | None = None,
                 tokenizer: str = "bert-base-uncased", vision: dict | None = None, batch_size: int = 8,
                 device: str = "auto") -> None:
        super().__init__(batch_size, device)
        ckpt = resolve_file(checkpoint, IMAGE_REWARD_REPO, "ImageReward.pt", scorer=self.name, key="checkpoint")
        med = resolve_file(med_config, IMAGE_REWARD_REPO, "med_config.json", scorer=self.name, key="med_config")
        self.tokenizer = load_pretrained(BertTokenizer.from_pretrained, tokenizer, scorer=self.name, key="tokenizer")
        # BLIP's init_tokenizer adds these two tokens, which is why med_config has vocab_size 30524.
        self.tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
        vit = {**BLIP_LARGE_VIT, **(vision or {})}
        self.vision = BlipVisionModel(BlipVisionConfig(**vit, layer_norm_eps=1e-6, hidden_act="gelu"))
        bert = json.loads(med.read_text())
        self.text = BlipTextModel(BlipTextConfig(
            vocab_size=bert["vocab_size"], hidden_size=bert["hidden_size"], encoder_hidden_size=vit["hidden_size"],
            intermediate_size=bert["intermediate_size"], num_hidden_layers=bert["num_hidden_layers"],
            num_attention_heads=bert["num_attention_heads"], max_position_embeddings=bert["max_position_embeddings"],
            layer_norm_eps=bert.get("layer_norm_eps", 1e-12), hidden_act=bert.get("hidden_act", "gelu")),
            add_pooling_layer=False)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        _load_strict(self.vision, blip_to_transformers(state, "blip.visual_encoder."), "BLIP ViT", ckpt)
        text_state = {k[len("blip.text_encoder."):]: v for k, v in state.items() if k.startswith("blip.text_encoder.")}
        _load_strict(self.text, text_state, "BLIP text encoder", ckpt)
        self.head = RewardMLP.from_state_dict({k[len("mlp."):]: v for k, v in state.items() if k.startswith("mlp.")})
        self.image_size = vit["image_size"]
        for module in (self.vision, self.text, self.head):
            module.eval().to(self.device)

    def score_batch(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        pixels = openai_clip_pixels(images, self.image_size).to(self.device)  # ImageReward's `_transform`
        image_embeds = self.vision(pixel_values=pixels).last_hidden_state
        text = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=35,
                              return_tensors="pt").to(self.device)
        out = self.text(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                        encoder_hidden_states=image_embeds,
                        encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long,
                                                          device=self.device))
        return (self.head(out.last_hidden_state[:, 0, :].float()) - REWARD_MEAN) / REWARD_STD
