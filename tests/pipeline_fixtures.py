# Tiny random-weight SD1.5-, SDXL-, ControlNet-, IP-Adapter-, AnimateDiff-SDXL- and DiT-MoE-style pipelines.
"""diffusers' own test style (block_out_channels=(32, 64), a 32-dim CLIP text encoder) with a character-level
CLIP tokenizer built from an in-memory vocabulary, so text prompts work with no Hub access."""
from __future__ import annotations

import string
from pathlib import Path

import torch
from diffusers import (
    AnimateDiffSDXLPipeline,
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    MotionAdapter,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from w2sd.pipelines.moe import install_moe

SIZE = 32  # image side; latents are 16×16 with the 2-level VAE


def tokenizer() -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.printable.strip():
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")


def text_config(projection: int | None = None) -> CLIPTextConfig:
    extra = {"projection_dim": projection} if projection else {}
    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
                          num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000,
                          max_position_embeddings=16, **extra)


def vae() -> AutoencoderKL:
    return AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


UNET_BLOCKS = {"down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
               "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D")}


def sd15_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 2,
                                in_channels=4, out_channels=4, cross_attention_dim=32, norm_num_groups=8,
                                **UNET_BLOCKS)


def sdxl_unet(norm_num_groups: int = 8) -> UNet2DConditionModel:
    return UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 2,
                                in_channels=4, out_channels=4, attention_head_dim=(2, 4), use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
                                cross_attention_dim=64, norm_num_groups=norm_num_groups, **UNET_BLOCKS)


def sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(unet=sd15_unet(), vae=vae(), text_encoder=CLIPTextModel(text_config()),
                                   tokenizer=tokenizer(), scheduler=scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return ready(pipe)


def sdxl_components(seed: int = 0, norm_num_groups: int = 8) -> dict:
    torch.manual_seed(seed)
    return {"unet": sdxl_unet(norm_num_groups), "vae": vae(), "text_encoder": CLIPTextModel(text_config()),
            "text_encoder_2": CLIPTextModelWithProjection(text_config(projection=32)), "tokenizer": tokenizer(),
            "tokenizer_2": tokenizer(), "scheduler": scheduler()}


def sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    pipe = StableDiffusionXLPipeline(**sdxl_components(seed))
    return ready(pipe)


def controlnet_pipeline(seed: int = 0) -> StableDiffusionControlNetPipeline:
    base = sd15_pipeline(seed)
    torch.manual_seed(seed + 1)
    controlnet = ControlNetModel(block_out_channels=(32, 64), layers_per_block=1, in_channels=4,
                                 down_block_types=UNET_BLOCKS["down_block_types"], cross_attention_dim=32,
                                 conditioning_embedding_out_channels=(16, 32), norm_num_groups=8)
    pipe = StableDiffusionControlNetPipeline(**base.components, controlnet=controlnet)
    return ready(pipe)


IP_ADAPTER_WEIGHTS = "ip-adapter_tiny.safetensors"


def save_tiny_ip_adapter(unet: UNet2DConditionModel, folder: Path, seed: int = 0) -> Path:
    """A random IP-Adapter for `unet` laid out as the Hub repo h94/IP-Adapter: `<folder>/models/<weights>` in
    diffusers' format (image_proj.* = ImageProjection, ip_adapter.<id>.to_k_ip/to_v_ip per cross-attention, ids
    1, 3, 5, … in attn_processors order) and `<folder>/models/image_encoder` (a tiny CLIP vision tower)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    dim, embed, tokens = unet.config.cross_attention_dim, 32, 4
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=embed, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        image_size=32, patch_size=4))
    encoder.save_pretrained(folder / "models" / "image_encoder")
    weights = {"image_proj.proj.weight": torch.randn(tokens * dim, embed) * 0.2,
               "image_proj.proj.bias": torch.randn(tokens * dim) * 0.2,
               "image_proj.norm.weight": torch.ones(dim), "image_proj.norm.bias": torch.zeros(dim)}
    cross = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for i, name in enumerate(cross):
        block = name.split(".")
        channels = unet.config.block_out_channels
        hidden = channels[-1] if block[0] == "mid_block" else \
            (list(reversed(channels)) if block[0] == "up_blocks" else channels)[int(block[1])]
        for proj in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{2 * i + 1}.{proj}.weight"] = torch.randn(hidden, dim) * 0.2
    save_file(weights, str(folder / "models" / IP_ADAPTER_WEIGHTS))
    return folder


def load_tiny_ip_adapter(pipe, folder: Path):
    pipe.load_ip_adapter(str(folder), subfolder="models", weight_name=IP_ADAPTER_WEIGHTS, local_files_only=True)
    return ready(pipe)


def ip_adapter_pipeline(build=sd15_pipeline, folder: Path | None = None, seed: int = 0):
    """`build()` (SD1.5 or SDXL) with a tiny random IP-Adapter loaded through pipe.load_ip_adapter."""
    import tempfile

    pipe = build(seed)
    with tempfile.TemporaryDirectory() as tmp:
        return load_tiny_ip_adapter(pipe, save_tiny_ip_adapter(pipe.unet, folder or Path(tmp), seed + 7))


def animatediff_sdxl_pipeline(seed: int = 0) -> AnimateDiffSDXLPipeline:
    components = sdxl_components(seed, norm_num_groups=8)
    torch.manual_seed(seed + 1)
    adapter = MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=8,
                            motion_num_attention_heads=2, use_motion_mid_block=False)
    pipe = AnimateDiffSDXLPipeline(**components, motion_adapter=adapter)
    return ready(pipe)


def dit_moe_pipeline(seed: int = 0, num_experts: int = 8) -> DiTPipeline:
    """A DiT whose block MLPs are 8-expert MoE layers (num_experts=0: the plain DiT it is built from)."""
    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(sample_size=SIZE // 2, num_layers=2, patch_size=4, attention_head_dim=8,
                                        num_attention_heads=2, in_channels=4, out_channels=8,
                                        activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                        norm_type="ada_norm_zero", norm_elementwise_affine=False)
    if num_experts:
        install_moe(transformer, num_experts)
    pipe = DiTPipeline(transformer=transformer, vae=vae(), scheduler=scheduler(), id2label={0: "tench", 1: "goldfish"})
    return ready(pipe)


def ready(pipe):
    """Inference mode as from_pretrained leaves it (DiT's label embedding drops classes at random in train mode)."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def add_random_lora(network: torch.nn.Module, name: str, seed: int = 0, rank: int = 4) -> None:
    """A peft LoRA with random (non-zero) A and B, so its scale visibly changes the output."""
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    network.add_adapter(config, adapter_name=name)


def save_lora(pipe: StableDiffusionPipeline | StableDiffusionXLPipeline, name: str, folder: Path) -> Path:
    """Write the adapter `name` of pipe.unet as a diffusers LoRA file; returns the .safetensors path."""
    layers = get_peft_model_state_dict(pipe.unet, adapter_name=name)
    type(pipe).save_lora_weights(folder, unet_lora_layers=layers)
    return folder / "pytorch_lora_weights.safetensors"


def save_tiny_models(root: Path) -> dict[str, Path]:
    """Folders as a user's disk would hold them: base pipelines, a LoRA file, a ControlNet, an IP-Adapter, a motion
    adapter and DiT-MoE weights, each saved with save_pretrained; keys name what the presets' `path` overrides
    point to."""
    from safetensors.torch import save_file

    paths = {name: root / name for name in ("sd15", "sd15_b", "sdxl", "sdxl_b", "controlnet", "motion", "dit", "moe")}
    sd15_pipeline(0).save_pretrained(paths["sd15"])
    sd15_pipeline(1).save_pretrained(paths["sd15_b"])
    sdxl = sdxl_pipeline(0)
    sdxl.save_pretrained(paths["sdxl"])
    sdxl_pipeline(1).save_pretrained(paths["sdxl_b"])
    add_random_lora(sdxl.unet, "style", seed=3)
    paths["sdxl_lora"] = save_lora(sdxl, "style", root / "sdxl_lora")
    sd = sd15_pipeline(0)
    paths["ip_adapter"] = save_tiny_ip_adapter(sd.unet, root / "ip_adapter")
    add_random_lora(sd.unet, "style", seed=3)
    paths["sd15_lora"] = save_lora(sd, "style", root / "sd15_lora")
    controlnet_pipeline(0).controlnet.save_pretrained(paths["controlnet"])
    animatediff_sdxl_pipeline(0).motion_adapter.save_pretrained(paths["motion"])
    dit = dit_moe_pipeline(0, num_experts=0)
    dit.save_pretrained(paths["dit"])
    torch.manual_seed(5)
    install_moe(dit.transformer, num_experts=8)
    paths["moe"].mkdir()
    save_file(dit.transformer.state_dict(), str(paths["moe"] / "moe_transformer.safetensors"))
    return paths
