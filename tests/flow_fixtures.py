# Tiny random-weight FLUX.1-dev/schnell-, SD3.5 Large/Medium- and Wan2.1-T2V-style pipelines from the real Hub configs.
"""Each keeps its checkpoint's scheduler config verbatim (class, shift, dynamic shifting, Wan's UniPC with flow_shift),
the transformer's channels, patching, guidance embedding, qk norm and dual-attention pattern, and the VAE's latent
channels and latent normalisation (scaling/shift factor, Wan's latents_mean/std); only width and depth shrink
(tests/fixtures/hub_configs/*/SOURCE.md). Text encoders are optional: the λ = 0 tests pass prompt_embeds; with
`text=True` a 2-layer 32-wide CLIP (and T5 for Flux) with the character-level tokenizer of pipeline_fixtures
encodes text prompts offline."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402

FLUX_DEV = "black-forest-labs--FLUX.1-dev"
FLUX_SCHNELL = "black-forest-labs--FLUX.1-schnell"
SD35_LARGE = "stabilityai--stable-diffusion-3.5-large"
SD35_MEDIUM = "stabilityai--stable-diffusion-3.5-medium"
WAN_13B = "Wan-AI--Wan2.1-T2V-1.3B-Diffusers"
WAN_14B = "Wan-AI--Wan2.1-T2V-14B-Diffusers"
TEXT_DIM = 32   # joint_attention_dim / text_dim of the shrunk transformers (T5's d_model)
SIZE = F.SIZE   # 32-pixel images: 16×16 latents with the 2-level VAEs (Flux: 64 tokens), 4×4 for Wan's 8× VAE
WAN_FRAMES = 5  # 4·1 + 1 frames → 2 latent frames


def clip(projection: bool = False) -> CLIPTextModel:
    config = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                            vocab_size=1000, max_position_embeddings=16, projection_dim=32)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def t5() -> T5EncoderModel:
    return T5EncoderModel(T5Config(d_model=TEXT_DIM, d_ff=37, d_kv=8, num_heads=4, num_layers=2, vocab_size=1000,
                                   relative_attention_num_buckets=8))


def flux_pipeline(seed: int = 0, repo: str = FLUX_DEV, text: bool = False) -> FluxPipeline:
    """FLUX.1-dev (guidance embedding) or FLUX.1-schnell: 16 latent channels packed 2×2 into 64-dim tokens."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel.from_config(F.shrink(
        F.hub_config(repo, "transformer_config.json"), attention_head_dim=16, num_attention_heads=2, num_layers=1,
        num_single_layers=1, joint_attention_dim=TEXT_DIM, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6)))
    encoders = {"text_encoder": clip(), "tokenizer": F.tokenizer(), "text_encoder_2": t5(),
                "tokenizer_2": F.tokenizer()} if text else \
        {"text_encoder": None, "tokenizer": None, "text_encoder_2": None, "tokenizer_2": None}
    pipe = FluxPipeline(transformer=transformer, vae=F.vae(repo), scheduler=F.hub_scheduler(repo), **encoders)
    return F.ready(pipe)


def sd3_pipeline(seed: int = 0, repo: str = SD35_LARGE, text: bool = False) -> StableDiffusion3Pipeline:
    """SD3.5 Large (or Medium, with its dual-attention layers): 16 latent channels, 2×2 patches, true CFG. With
    `text`, two CLIPs encode prompts and the T5 slot stays empty (the pipeline then pads with zeros)."""
    torch.manual_seed(seed)
    config = F.hub_config(repo, "transformer_config.json")
    transformer = SD3Transformer2DModel.from_config(F.shrink(
        config, num_layers=2, attention_head_dim=8, num_attention_heads=4, joint_attention_dim=TEXT_DIM,
        caption_projection_dim=32, pooled_projection_dim=64, sample_size=SIZE // 2, pos_embed_max_size=16,
        dual_attention_layers=(0,) if config["dual_attention_layers"] else ()))
    encoders = {"text_encoder": clip(True), "tokenizer": F.tokenizer(), "text_encoder_2": clip(True),
                "tokenizer_2": F.tokenizer()} if text else \
        {"text_encoder": None, "tokenizer": None, "text_encoder_2": None, "tokenizer_2": None}
    pipe = StableDiffusion3Pipeline(transformer=transformer, vae=F.vae(repo), scheduler=F.hub_scheduler(repo),
                                    text_encoder_3=None, tokenizer_3=None, **encoders)
    return F.ready(pipe)


def wan_vae(repo: str = WAN_13B) -> AutoencoderKLWan:
    """Wan's causal 3-D VAE (8× spatial, 4× temporal, z_dim 16, its latents_mean/std) at 3 base channels."""
    return AutoencoderKLWan.from_config(F.shrink(F.hub_config(repo, "vae_config.json"), base_dim=3,
                                                 dim_mult=[1, 1, 1, 1], num_res_blocks=1))


def wan_pipeline(seed: int = 0, repo: str = WAN_13B) -> WanPipeline:
    """Wan2.1 T2V with its shipped UniPC scheduler (flow_shift 3); prompts come as prompt_embeds."""
    torch.manual_seed(seed)
    transformer = WanTransformer3DModel.from_config(F.shrink(
        F.hub_config(repo, "transformer_config.json"), num_attention_heads=2, attention_head_dim=12, ffn_dim=32,
        num_layers=2, text_dim=TEXT_DIM, rope_max_seq_len=32))
    pipe = WanPipeline(transformer=transformer, vae=wan_vae(repo), scheduler=F.hub_scheduler(repo),
                       text_encoder=None, tokenizer=None)
    return F.ready(pipe)


def embeds(kind: str, n: int = 1, seed: int = 0, negative: bool = False, seq: int = 6) -> dict[str, torch.Tensor]:
    """Random prompt embeddings with the keys and shapes the pipeline's __call__ takes."""
    gen = torch.Generator().manual_seed(seed)
    pooled = {"flux": 32, "sd3": 64}.get(kind)
    out = {"prompt_embeds": torch.randn(n, seq, TEXT_DIM, generator=gen)}
    if pooled:
        out["pooled_prompt_embeds"] = torch.randn(n, pooled, generator=gen)
    if negative:
        out["negative_prompt_embeds"] = torch.randn(n, seq, TEXT_DIM, generator=gen)
        if pooled:
            out["negative_pooled_prompt_embeds"] = torch.randn(n, pooled, generator=gen)
    return out
