# Tiny random-weight SD1.5-, SDXL-, ControlNet-, IP-Adapter-, AnimateDiff-SDXL- and DiT-MoE-style pipelines.
"""Built from the real Hub configs under tests/fixtures/hub_configs (see its README.md), shrunk in width and depth
only (block_out_channels (32, 64), one layer per block, 32-dim text encoders, small attention and sample sizes):
each keeps its checkpoint's own scheduler config (class, betas, spacing, offset, prediction type), VAE
scaling_factor/force_upcast/latents_mean/std, addition_embed_type, projection dims and activation functions. A
character-level CLIP tokenizer built from an in-memory vocabulary lets text prompts work with no Hub access."""
from __future__ import annotations

import json
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import diffusers
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
from w2sd.seeding import per_sample_generators, per_sample_randn

SIZE = 32  # image side; latents are 16×16 with the 2-level VAE
HUB = Path(__file__).resolve().parent / "fixtures" / "hub_configs"
SD15 = "stable-diffusion-v1-5--stable-diffusion-v1-5"
DREAMSHAPER = "Lykon--dreamshaper-8"
SDXL = "stabilityai--stable-diffusion-xl-base-1.0"
JUGGERNAUT = "RunDiffusion--Juggernaut-XL-v9"
SD21 = "stabilityai--stable-diffusion-2-1"
DIT = "facebook--DiT-XL-2-256"
MOTION = "guoyww--animatediff-motion-adapter-sdxl-beta"
CONTROLNET = "lllyasviel--control_v11p_sd15_canny"
IP_ADAPTER = "h94--IP-Adapter"
WIDTH = (32, 64)  # block_out_channels of every shrunk UNet, VAE, ControlNet and motion adapter


def hub_config(repo: str, name: str) -> dict:
    """A config file of a real checkpoint, without diffusers' bookkeeping keys (`_class_name`, …)."""
    return {k: v for k, v in json.loads((HUB / repo / name).read_text()).items() if not k.startswith("_")}


def hub_scheduler(repo: str, cls: type | None = None, **options):
    """The checkpoint's scheduler as from_pretrained builds it (its own class by default), or `cls.from_config` of
    it, as a user switching schedulers would (e.g. DPMSolverMultistepScheduler with use_karras_sigmas=True)."""
    raw = json.loads((HUB / repo / "scheduler_config.json").read_text())
    cls = cls or getattr(diffusers, raw["_class_name"])
    return cls.from_config(cls.load_config(str(HUB / repo / "scheduler_config.json")), **options)


def ddim_twin(pipe):
    """`pipe` with DDIMScheduler.from_config(pipe.scheduler.config): the diffusers pipeline W2SD at λ = 0 equals.
    A config without clip_sample is not clipped (w2sd.schedule.check_step_options)."""
    config = pipe.scheduler.config
    ddim = DDIMScheduler.from_config(config, clip_sample=config.get("clip_sample", False))
    return ready(type(pipe).from_pipe(pipe, scheduler=ddim, dtype=pipe.dtype))  # from_pipe casts (default fp32)


def unit_noise(pipe, seed: int, num_frames: int | None = None) -> torch.Tensor:
    """x_T of one sample drawn independently of w2sd.pipelines.latents: a CPU generator per seed, unit variance."""
    channels = (getattr(pipe, "unet", None) or pipe.transformer).config.in_channels
    frames = (num_frames,) if num_frames else ()
    return per_sample_randn(per_sample_generators([seed]), (channels, *frames, SIZE // 2, SIZE // 2))


def tokenizer() -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.printable.strip():
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


_REAL_SIZE = False


@contextmanager
def real_size() -> Iterator[None]:
    """Inside it the builders below skip the shrink: the checkpoints' real architectures with random weights
    (benchmarks/gpu_smoke.py, benchmarks/bench_overhead.py)."""
    global _REAL_SIZE
    _REAL_SIZE = True
    try:
        yield
    finally:
        _REAL_SIZE = False


def shrink(config: dict, **small) -> dict:
    """`config` with the width/depth entries `small` (nothing changed inside real_size())."""
    return dict(config) if _REAL_SIZE else {**config, **small}


def text_config(repo: str, name: str = "text_encoder_config.json") -> CLIPTextConfig:
    """The checkpoint's text encoder (activation, projection_dim, token ids) at 32 wide, 2 layers deep."""
    config = {k: v for k, v in hub_config(repo, name).items() if k not in ("architectures", "torch_dtype")}
    return CLIPTextConfig(**shrink(config, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                   num_hidden_layers=2, vocab_size=1000, max_position_embeddings=16))


def _ends(values: list) -> tuple:
    """First and last entry of a per-block list: a 2-block model keeps the real outer block types."""
    return (values[0], values[-1])


def vae(repo: str = SD15) -> AutoencoderKL:
    config = hub_config(repo, "vae_config.json")
    return AutoencoderKL.from_config(shrink(config, block_out_channels=WIDTH, layers_per_block=1, sample_size=SIZE,
                                            down_block_types=_ends(config["down_block_types"]),
                                            up_block_types=_ends(config["up_block_types"])))


def unet_config(config: dict, cross_attention_dim: int) -> dict:
    """A UNet/ControlNet config at WIDTH channels, one layer per block, 16×16 latents; everything else as shipped."""
    heads = config.get("attention_head_dim", 8)
    layers = config.get("transformer_layers_per_block", 1)
    ups = {"up_block_types": _ends(config["up_block_types"])} if "up_block_types" in config else {}
    return shrink(config, block_out_channels=WIDTH, layers_per_block=1, norm_num_groups=8,
                  cross_attention_dim=cross_attention_dim, sample_size=SIZE // 2,
                  down_block_types=_ends(config["down_block_types"]), **ups,
                  attention_head_dim=(2, 4) if isinstance(heads, list) else heads,
                  transformer_layers_per_block=(1, 2) if isinstance(layers, list) else layers)


def unet(repo: str = SD15, cross_attention_dim: int = 32) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_config(unet_config(hub_config(repo, "unet_config.json"), cross_attention_dim))


def sd15_unet() -> UNet2DConditionModel:
    return unet(SD15)


def sdxl_unet() -> UNet2DConditionModel:
    """cross_attention_dim = both text encoders' hidden sizes (32 + 32), as 768 + 1280 = 2048 in SDXL."""
    return unet(SDXL, cross_attention_dim=64)


def sd_pipeline(repo: str = SD15, seed: int = 0, unet_repo: str | None = None) -> StableDiffusionPipeline:
    """An SD1.x/2.x-style pipeline of checkpoint `repo` (its scheduler, VAE and text encoder configs); `unet_repo`
    stands in where the checkpoint's UNet config was not found (DreamShaper-8 is the SD1.5 architecture)."""
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(unet=unet(unet_repo or repo), vae=vae(repo), tokenizer=tokenizer(),
                                   text_encoder=CLIPTextModel(text_config(repo)), scheduler=hub_scheduler(repo),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return ready(pipe)


def sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    return sd_pipeline(SD15, seed)


def sdxl_components(seed: int = 0, repo: str = SDXL) -> dict:
    """SDXL-architecture components with `repo`'s scheduler and VAE (Juggernaut-XL's UNet and text encoder configs
    were not found; its architecture is SDXL base's)."""
    torch.manual_seed(seed)
    return {"unet": sdxl_unet(), "vae": vae(repo), "text_encoder": CLIPTextModel(text_config(SDXL)),
            "text_encoder_2": CLIPTextModelWithProjection(text_config(SDXL, "text_encoder_2_config.json")),
            "tokenizer": tokenizer(), "tokenizer_2": tokenizer(), "scheduler": hub_scheduler(repo)}


def sdxl_pipeline(seed: int = 0, repo: str = SDXL) -> StableDiffusionXLPipeline:
    return ready(StableDiffusionXLPipeline(**sdxl_components(seed, repo)))


def controlnet_pipeline(seed: int = 0) -> StableDiffusionControlNetPipeline:
    base = sd15_pipeline(seed)
    torch.manual_seed(seed + 1)
    config = unet_config(hub_config(CONTROLNET, "config.json"), cross_attention_dim=32)
    config.pop("sample_size", None)  # a ControlNet has none
    # one conditioning-embedding downsampling, matching the 2-level VAE (the real 4-entry list downsamples by 8)
    controlnet = ControlNetModel.from_config(shrink(config, conditioning_embedding_out_channels=(16, 32)))
    return ready(StableDiffusionControlNetPipeline(**base.components, controlnet=controlnet))


IP_ADAPTER_WEIGHTS = "ip-adapter_tiny.safetensors"


def save_tiny_ip_adapter(unet: UNet2DConditionModel, folder: Path, seed: int = 0) -> Path:
    """A random IP-Adapter for `unet` laid out as the Hub repo h94/IP-Adapter: `<folder>/models/<weights>` in
    diffusers' format (image_proj.* = ImageProjection, ip_adapter.<id>.to_k_ip/to_v_ip per cross-attention, ids
    1, 3, 5, … in attn_processors order) and `<folder>/models/image_encoder` (a tiny CLIP vision tower)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    real = {k: v for k, v in hub_config(IP_ADAPTER, "image_encoder_config.json").items()
            if k not in ("architectures", "torch_dtype")}
    # the real ViT-H/14 tower (gelu, projection_dim 1024) at 32 wide, 2 layers, on 32-pixel images
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**shrink(
        real, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32,
        patch_size=4)))
    dim, embed, tokens = unet.config.cross_attention_dim, encoder.config.projection_dim, 4
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
    save_file({k: v.cpu() for k, v in weights.items()}, str(folder / "models" / IP_ADAPTER_WEIGHTS))
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


def animatediff_sdxl_pipeline(seed: int = 0, repo: str = JUGGERNAUT) -> AnimateDiffSDXLPipeline:
    """The video preset's pipeline: the SDXL motion adapter's config on `repo` (Juggernaut-XL by default)."""
    components = sdxl_components(seed, repo)
    torch.manual_seed(seed + 1)
    adapter = MotionAdapter.from_config(shrink(hub_config(MOTION, "config.json"), block_out_channels=WIDTH,
                                               motion_layers_per_block=1, motion_norm_num_groups=8,
                                               motion_num_attention_heads=2))
    return ready(AnimateDiffSDXLPipeline(**components, motion_adapter=adapter))


def dit_moe_pipeline(seed: int = 0, num_experts: int = 8) -> DiTPipeline:
    """A DiT whose block MLPs are 8-expert MoE layers (num_experts=0: the plain DiT it is built from). DiT-XL-2-256's
    VAE config was not found; SD1.5's (the same 0.18215-scaled KL-f8 family) stands in."""
    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel.from_config(shrink(hub_config(DIT, "transformer_config.json"), num_layers=2,
                                                           attention_head_dim=8, num_attention_heads=2,
                                                           sample_size=SIZE // 2))
    if num_experts:
        install_moe(transformer, num_experts)
    pipe = DiTPipeline(transformer=transformer, vae=vae(SD15), scheduler=hub_scheduler(DIT),
                       id2label={0: "tench", 1: "goldfish"})
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


def random_text_encoder_lora(network: torch.nn.Module, seed: int, rank: int = 4) -> dict[str, torch.Tensor]:
    """peft-format LoRA weights for the q/v projections of a CLIP text encoder (peft cannot add an adapter to a
    transformers model here: transformers 5 wants peft >= 0.22, the newest on the index is 0.21)."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, layer in network.named_modules():
        if name.endswith(("q_proj", "v_proj")) and isinstance(layer, torch.nn.Linear):
            weights[f"{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=gen) * 0.3
            weights[f"{name}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=gen) * 0.3
    return weights


def load_sdxl_lora_with_text_encoders(pipe: StableDiffusionXLPipeline, name: str, folder: Path) -> None:
    """A LoRA file as many SDXL LoRAs are: UNet plus both text encoders, loaded with load_lora_weights."""
    add_random_lora(pipe.unet, "tmp", seed=3)
    unet_layers = get_peft_model_state_dict(pipe.unet, adapter_name="tmp")
    pipe.unet.delete_adapters("tmp")
    type(pipe).save_lora_weights(folder, unet_lora_layers=unet_layers,
                                 text_encoder_lora_layers=random_text_encoder_lora(pipe.text_encoder, 4),
                                 text_encoder_2_lora_layers=random_text_encoder_lora(pipe.text_encoder_2, 5))
    pipe.load_lora_weights(folder, weight_name="pytorch_lora_weights.safetensors", adapter_name=name)


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
