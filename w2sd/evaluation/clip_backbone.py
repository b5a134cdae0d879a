# CLIP towers through transformers: loading, L2-normalised embeddings, and open_clip → transformers weight names.
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import transformers
from PIL import Image
from transformers import AutoProcessor, CLIPModel

from w2sd.evaluation.checkpoints import load_pretrained

# PickScore's and CLIPScore's originals resized with PIL (transformers 4); transformers 5 defaults to torchvision
# resizing where torchvision loads, which moves scores by ~1e-4 relative, so the PIL backend is asked for.
PIL_RESIZING = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}


def load_clip(model: str, processor: str | None, *, scorer: str, model_key: str = "model") -> tuple[CLIPModel, object]:
    """A CLIPModel in eval mode and its processor (tokenizer + image preprocessing); `processor` defaults to `model`."""
    net = load_pretrained(CLIPModel.from_pretrained, model, scorer=scorer, key=model_key)
    proc = load_pretrained(AutoProcessor.from_pretrained, processor or model, scorer=scorer,
                           key="processor" if processor else model_key, **PIL_RESIZING)
    return net.eval(), proc


def image_embeddings(model: CLIPModel, processor, images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    """Embeddings of images preprocessed by the transformers processor (PickScore's and CLIPScore's own path)."""
    return pixel_embeddings(model, processor(images=list(images), return_tensors="pt")["pixel_values"], device)


def pixel_embeddings(model: CLIPModel, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """L2-normalised image embeddings of already preprocessed (N, 3, H, W) pixels."""
    feats = model.get_image_features(pixel_values=pixels.to(device, model.dtype))
    return torch.nn.functional.normalize(features_tensor(feats), dim=-1)


def text_embeddings(model: CLIPModel, processor, prompts: Sequence[str], device: torch.device) -> torch.Tensor:
    # Pad/truncate to the text tower's context (77 for CLIP), as open_clip's tokenizer does for HPS.
    tokens = processor(text=list(prompts), padding="max_length", truncation=True, return_tensors="pt",
                       max_length=model.config.text_config.max_position_embeddings).to(device)
    feats = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    return torch.nn.functional.normalize(features_tensor(feats), dim=-1)


def features_tensor(output) -> torch.Tensor:
    """transformers ≥ 5 may return a model output object instead of the projected tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _tower(prefix_in: str, prefix_out: str, sd: Mapping[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    """open_clip/OpenAI residual blocks → transformers encoder layers (fused qkv split into q, k, v)."""
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for key, value in sd.items():
        if not key.startswith(prefix_in + "transformer.resblocks."):
            continue
        layer, rest = key[len(prefix_in + "transformer.resblocks."):].split(".", 1)
        base = f"{prefix_out}encoder.layers.{layer}."
        if rest.startswith("attn.in_proj_"):
            kind = rest.rsplit("_", 1)[-1]  # weight | bias
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{base}self_attn.{name}.{kind}"] = part
            continue
        module, kind = rest.rsplit(".", 1)
        out[f"{base}{names[module]}.{kind}"] = value


def openclip_to_transformers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an open_clip (OpenAI-layout) CLIP state dict, e.g. an HPS checkpoint, to transformers' CLIPModel.

    Written by hand because open_clip-torch needs torchvision, whose PyPI wheels do not load with the pinned CPU
    torch (its C++ ops fail to register); transformers runs the same ViT, so only the parameter names differ.
    """
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {
        "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
        "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
        "visual_projection.weight": sd["visual.proj"].t().contiguous(),
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
        "text_projection.weight": sd["text_projection"].t().contiguous(),
        "logit_scale": sd["logit_scale"],
    }
    _tower("visual.", "vision_model.", sd, out)
    _tower("", "text_model.", sd, out)
    return out
