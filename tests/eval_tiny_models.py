# Tiny random-weight stand-ins for the evaluation checkpoints, saved in their real on-disk formats, plus run folders.
from __future__ import annotations

import csv
import json
import string
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    BertTokenizer,
    BlipTextConfig,
    BlipVisionConfig,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from w2sd.evaluation.reward_head import RewardMLP

IMAGE_SIZE = 32
CHARS = list(string.ascii_lowercase + string.digits + ",.!?'-")


def clip_vocab() -> dict[str, int]:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in CHARS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return vocab


def tiny_clip(folder: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """A CLIPModel + CLIPProcessor folder, as `save_pretrained` writes for openai/... or laion/... ids."""
    torch.manual_seed(seed)
    vocab = clip_vocab()
    tower = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                 projection_dim=projection_dim, hidden_act="gelu")
    config = CLIPConfig(text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=24, bos_token_id=0,
                                         eos_token_id=1, pad_token_id=1),
                        vision_config=dict(tower, image_size=IMAGE_SIZE, patch_size=8),
                        projection_dim=projection_dim)
    CLIPModel(config).eval().save_pretrained(folder)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
                              tokenizer=CLIPTokenizer(vocab=vocab, merges=[]))
    processor.save_pretrained(folder)
    return folder


def to_openclip(model: CLIPModel) -> dict[str, torch.Tensor]:
    """transformers CLIP → open_clip names (independent inverse of the loader's renaming, for HPS checkpoints)."""
    sd = model.state_dict()
    out = {"visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
           "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
           "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
           "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
           "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
           "visual.proj": sd["visual_projection.weight"].t(),
           "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": sd["text_model.final_layer_norm.weight"],
           "ln_final.bias": sd["text_model.final_layer_norm.bias"],
           "text_projection": sd["text_projection.weight"].t(), "logit_scale": sd["logit_scale"]}
    for ours, theirs in (("vision_model.", "visual."), ("text_model.", "")):
        for i in range(len(getattr(model, ours.rstrip(".")).encoder.layers)):
            src, dst = f"{ours}encoder.layers.{i}.", f"{theirs}transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
                for a, b in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                             ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                    out[f"{dst}{a}.{kind}"] = sd[f"{src}{b}.{kind}"]
    return {f"module.{k}": v.clone() for k, v in out.items()}  # HPS checkpoints come from DDP training


def tiny_hps(folder: Path) -> tuple[Path, Path]:
    """(base folder with config + processor, HPS-format checkpoint {'state_dict': open_clip names})."""
    base = tiny_clip(folder / "base", seed=1)
    checkpoint = folder / "HPS_tiny.pt"
    torch.save({"state_dict": to_openclip(CLIPModel.from_pretrained(base))}, checkpoint)
    return base, checkpoint


def tiny_head(path: Path, in_features: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(RewardMLP(in_features).state_dict(), path)
    return path


BLIP_VISION = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37,
               "image_size": IMAGE_SIZE, "patch_size": 8}


def tiny_image_reward(folder: Path) -> dict[str, str]:
    """ImageReward.pt (original BLIP names), med_config.json and a BERT tokenizer folder; returns scorer kwargs."""
    torch.manual_seed(2)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS, *(f"##{c}" for c in CHARS)]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    tokenizer.save_pretrained(folder / "bert")
    med = {"vocab_size": len(words) + 2, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 37, "max_position_embeddings": 64, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
           "encoder_width": BLIP_VISION["hidden_size"], "add_cross_attention": True}
    (folder / "med_config.json").write_text(json.dumps(med))
    vision = BlipVisionModel(BlipVisionConfig(**BLIP_VISION, layer_norm_eps=1e-6))
    text = BlipTextModel(BlipTextConfig(vocab_size=med["vocab_size"], hidden_size=32, encoder_hidden_size=32,
                                        intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                                        max_position_embeddings=64), add_pooling_layer=False)
    rename = [("encoder.layers.", "blocks."), (".self_attn.projection.", ".attn.proj."), (".self_attn.", ".attn."),
              (".layer_norm1.", ".norm1."), (".layer_norm2.", ".norm2."), ("post_layernorm.", "norm."),
              ("embeddings.patch_embedding.", "patch_embed.proj."), ("embeddings.position_embedding", "pos_embed"),
              ("embeddings.class_embedding", "cls_token")]
    state = {}
    for key, value in vision.state_dict().items():
        for a, b in rename:
            key = key.replace(a, b)
        state[f"blip.visual_encoder.{key}"] = value
    state.update({f"blip.text_encoder.{k}": v for k, v in text.state_dict().items()})
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(64)[None]  # as old BERT code saved it
    state.update({f"mlp.{k}": v for k, v in RewardMLP(32).state_dict().items()})
    torch.save(state, folder / "ImageReward.pt")
    return {"checkpoint": str(folder / "ImageReward.pt"), "med_config": str(folder / "med_config.json"),
            "tokenizer": str(folder / "bert")}


def tiny_dino(folder: Path) -> Path:
    torch.manual_seed(3)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                       image_size=IMAGE_SIZE, patch_size=8), add_pooling_layer=False).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def pattern_image(seed: int, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


class TinyFeatures(torch.nn.Module):
    """Injected feature network: FID features = mean colour per channel and its square (6 features); IS logits =
    50 × mean colour (3 "classes": the dominant channel), a different output than the features."""

    num_features = 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.float().mean(dim=(2, 3)) / 255
        return torch.cat([m, m**2], dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return 50.0 * x.float().mean(dim=(2, 3)) / 255


PROMPTS = ["a red cat", "a blue dog", "two apples", "a house at night", "a tree", "the sea"]


def prompt_file(folder: Path, prompts: list[str] = PROMPTS) -> Path:
    """A Pick-a-Pic-style CSV (caption column, with an empty caption the protocol must skip)."""
    path = folder / "captions.csv"
    rows = [["id", "caption"], ["0", prompts[0]], ["1", ""]] + [[str(i + 2), p] for i, p in enumerate(prompts[1:])]
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def make_run_dir(root: Path, prompts_csv: Path, n: int = 4, methods: tuple[str, ...] = ("weak", "strong", "w2sd"),
                 frames: int = 1, prompts: list[str] = PROMPTS) -> Path:
    """A generation run folder following experiments/generate.py's contract (manifest.csv + PNGs + results.json)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps({"schema_version": 1, "config": {
        "prompts": {"name": "tiny", "file": str(prompts_csv)}}}))
    rows = [["method", "index", "seed", "prompt", "path", "frames"]]
    for m, method in enumerate(methods):
        (root / method).mkdir(exist_ok=True)
        for i in range(n):
            strip = [pattern_image(100 * m + i)] * frames if frames > 1 else [pattern_image(100 * m + i)]
            image = Image.new("RGB", (48 * len(strip), 48))
            for k, frame in enumerate(strip):
                image.paste(frame, (48 * k, 0))
            image.save(root / method / f"{i:05d}.png")
            rows.append([method, str(i), str(i), prompts[i], f"{method}/{i:05d}.png", str(frames)])
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return root


def save_as_from_gpu(state: dict[str, torch.Tensor], path: Path) -> Path:
    """torch.save `state` with every storage tagged "cuda:0", as the released checkpoints were saved from GPU
    training; loading it without `map_location` fails on a machine without CUDA."""
    from torch import serialization

    def tag(storage) -> str | None:
        return "cuda:0" if storage.device.type == "cpu" else None

    serialization.register_package(0, tag, lambda storage, location: None)
    try:
        torch.save(state, path)
    finally:  # torch has no public unregister; the registry is a plain list
        serialization._package_registry[:] = [p for p in serialization._package_registry if p[1] is not tag]
    return path


class RunsCode:
    """A pickled object that creates `marker` when unpickled: what a malicious checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)
