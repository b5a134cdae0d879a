# GPU smoke run: every gap type's methods on the presets' real architectures (random weights), half precision, T = 4.
"""`python -m benchmarks.gpu_smoke` (on a CUDA machine) → results/gpu_smoke/<device>.json.

Real size (default): the checkpoints' architectures from tests/fixtures/hub_configs with random weights, in --dtype
(float16) on --device (cuda), at their default resolutions. For each gap type of conf/gap (its settings and
methods as the presets run them) and each method: no NaN, NFE, wall time and peak accelerator memory. Device
checks: enable_model_cpu_offload, enable_sequential_cpu_offload, and strong/weak legs on different devices (a
second GPU, else the CPU). λ = 0 against diffusers' DDIM pipeline is checked only on the tiny float32 pipelines
(a real-size net with random weights is numerically chaotic, so there it measures time and memory only).
`--tiny`: the shrunk test pipelines only, float32 on the CPU (tests/test_gpu_smoke.py runs it).

Flow cases (`--flow`, default all of FLOW_GAPS): the flow presets' settings and methods (conf/experiment/flux_*.yaml,
sd35_cfg, wan_cfg) on FLUX.1-dev / FLUX.1-schnell / SD3.5 Large / Wan2.1-1.3B architectures through the generation
path, with random prompt embeddings of the real widths; λ = 0 against the pipeline's own output for the same
generator on the tiny float32 pipelines."""
from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import flow_fixtures as FF  # noqa: E402
import pipeline_fixtures as F  # noqa: E402

from w2sd.methods import resolve_method, run_method  # noqa: E402
from w2sd.pipelines import ModelSetting, PipelineDenoiser  # noqa: E402
from w2sd.pipelines.encoding import encode  # noqa: E402
from w2sd.pipelines.flow import euler_scheduler, flow_kind  # noqa: E402
from w2sd.pipelines.generation import Batch, GenerationConfig, generate  # noqa: E402
from w2sd.pipelines.latents import decode, initial_noise, latent_shape  # noqa: E402
from w2sd.results import RESULTS_SCHEMA_VERSION, atomic_write_json  # noqa: E402
from w2sd.schedule import schedule_from_diffusers  # noqa: E402

T, SEED, PROMPT, REFINED = 4, 0, "a cat", "a fluffy cat"
FRAMES = 4


def _sdxl_lora() -> dict:
    pipe = F.sdxl_pipeline(0)
    F.add_random_lora(pipe.unet, "style", seed=3)
    return {"base": pipe}


# gap (conf/gap/<file>.yaml) → (builder of its model table, extra generation inputs); video = weights_cfg on
# AnimateDiff-SDXL as conf/experiment/video_animatediff_sdxl.yaml runs it
GAPS: dict[str, tuple[str, Callable[[], dict], dict]] = {
    "cfg": ("cfg", lambda: {"base": F.sdxl_pipeline(0)}, {}),
    "prompt": ("prompt", lambda: {"base": F.sdxl_pipeline(0)}, {}),
    "lora": ("lora", _sdxl_lora, {}),
    "lora_released": ("lora_released", _sdxl_lora, {}),
    "weights": ("weights", lambda: {"strong": F.sdxl_pipeline(0, F.JUGGERNAUT), "weak": F.sdxl_pipeline(1)}, {}),
    "weights_cfg": ("weights_cfg", lambda: {"strong": F.sdxl_pipeline(0, F.JUGGERNAUT), "weak": F.sdxl_pipeline(1)},
                    {}),
    "controlnet": ("controlnet", lambda: {"base": F.controlnet_pipeline(0)}, {"control": True}),
    "ip_adapter": ("ip_adapter", lambda: {"base": F.ip_adapter_pipeline()}, {"ip_adapter": True}),
    "moe": ("moe", lambda: {"base": F.dit_moe_pipeline(0)}, {}),
    "video": ("weights_cfg", lambda: {"strong": F.animatediff_sdxl_pipeline(0),
                                      "weak": F.animatediff_sdxl_pipeline(1, F.SDXL)}, {"frames": FRAMES}),
}


# flow preset (conf/experiment/<name>.yaml: its gap's settings and methods) → builder of its model table, frames
FLOW_GAPS: dict[str, tuple[Callable[[], dict], int | None]] = {
    "flux_guidance": (lambda: {"base": FF.flux_pipeline(0)}, None),
    "flux_weights": (lambda: {"strong": FF.flux_pipeline(0), "weak": FF.flux_pipeline(1, FF.FLUX_SCHNELL)}, None),
    "sd35_cfg": (lambda: {"base": FF.sd3_pipeline(0)}, None),
    "wan_cfg": (lambda: {"base": FF.wan_pipeline(0)}, FF.WAN_FRAMES),
}


def preset_gap_config(preset: str) -> dict:
    """settings + methods a flow preset runs: its gap file's, updated by the preset's own gap.settings/methods."""
    raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "experiment" / f"{preset}.yaml"))
    gap = next(d["override /gap"] for d in raw["defaults"] if isinstance(d, dict) and "override /gap" in d)
    base = gap_config(gap)
    return {key: {**base[key], **(raw.get("gap", {}).get(key) or {})} for key in ("settings", "methods")}


def flow_embeds(pipe: Any, n: int = 1, seq: int = 16) -> dict[str, torch.Tensor]:
    """Random prompt / negative embeddings of the transformer's real text widths (no text encoders are built)."""
    config, gen = pipe.transformer.config, torch.Generator().manual_seed(SEED)
    width = getattr(config, "joint_attention_dim", None) or config.text_dim
    out = {}
    for prefix in ("", "negative_"):
        out[f"{prefix}prompt_embeds"] = torch.randn(n, seq, width, generator=gen)
        if getattr(config, "pooled_projection_dim", None):
            out[f"{prefix}pooled_prompt_embeds"] = torch.randn(n, config.pooled_projection_dim, generator=gen)
    return out


def run_flow_gap(preset: str, device: torch.device, dtype: torch.dtype, tiny: bool) -> dict:
    """Every method of one flow preset through w2sd.pipelines.generation: NFE, wall time, peak memory, finite."""
    build, frames = FLOW_GAPS[preset]
    config = preset_gap_config(preset)
    if tiny:
        pipes = build()
    else:
        with F.real_size(), torch.device(device):
            pipes = build()
        frames = 17 if frames else None  # Wan: 17 frames (5 latent frames) keep the smoke run short
    pipes = {name: pipe.to(device, dtype) for name, pipe in pipes.items()}
    settings = {name: ModelSetting.from_config(name, raw) for name, raw in config["settings"].items()}
    some = next(iter(pipes.values()))
    size = FF.SIZE if tiny else (512 if flow_kind(some) == "wan" else 1024)
    embeds = {k: v.to(device, dtype) for k, v in flow_embeds(some).items()}
    rows = {}
    for method, spec in config["methods"].items():
        resolved = resolve_method(method, spec, {"lam": T - 1}, settings, T)
        models = {name: (pipes[settings[name].model], settings[name]) for name in resolved["roles"].values()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        out = generate(resolved, models, Batch(prompt_embeds=embeds),
                       GenerationConfig(T=T, height=size, width=size, num_frames=frames, output_type="np"),
                       seeds=[SEED])
        synchronize(device)
        decoded = np.asarray(out.output.frames if frames else out.output.images)
        rows[method] = {"nfe": out.nfe, "wall_time_s": time.perf_counter() - start,
                        "peak_memory_gb": peak_memory_gb(device),
                        "finite": bool(torch.isfinite(out.latents).all()) and bool(np.isfinite(decoded).all())}
    return {"size": size, "frames": frames, "methods": rows}


def lambda_zero_flow(preset: str, device: torch.device) -> float:
    """max |Δ| of W2SD at λ = 0 with the preset's strong setting vs the pipeline's own output (Wan: with
    FlowMatchEuler at its flow_shift) for the same generator; tiny float32 pipelines, output_type latent."""
    from w2sd.pipelines import w2sd_generate

    build, frames = FLOW_GAPS[preset]
    strong = ModelSetting.from_config("strong", preset_gap_config(preset)["settings"]["strong"])
    pipe = build()[strong.model].to(device)
    kind, embeds = flow_kind(pipe), {k: v.to(device) for k, v in flow_embeds(pipe).items()}
    if strong.cfg == 1.0 or kind == "flux":  # no uncond branch run (Flux: true CFG only with cfg ≠ 1)
        theirs = {"guidance_scale": strong.guidance or 3.5} if kind == "flux" else {"guidance_scale": 1.0}
        if strong.cfg != 1.0:
            theirs["true_cfg_scale"] = strong.cfg
        else:
            embeds = {k: v for k, v in embeds.items() if not k.startswith("negative_")}
    else:
        theirs = {"guidance_scale": strong.cfg}
    video = {"num_frames": frames} if frames else {}
    ours = w2sd_generate(strong=(pipe, strong), weak=(pipe, strong), prompt_embeds=embeds, T=T, lam=0,
                         generator=torch.Generator().manual_seed(SEED), height=FF.SIZE, width=FF.SIZE,
                         output_type="latent", **video)
    twin = type(pipe).from_pipe(pipe, scheduler=euler_scheduler(pipe)) if kind == "wan" else pipe
    twin.set_progress_bar_config(disable=True)
    ref = twin(**embeds, **theirs, num_inference_steps=T, generator=torch.Generator().manual_seed(SEED),
               height=FF.SIZE, width=FF.SIZE, output_type="latent", **video)
    ours, ref = (torch.as_tensor(o.frames if frames else o.images).cpu() for o in (ours, ref))
    return float((ours - ref).abs().max())


def gap_config(name: str) -> dict:
    """settings + methods of conf/gap/<name>.yaml, following its `defaults` (lora_released extends lora)."""
    raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "gap" / f"{name}.yaml"))
    base = gap_config(raw.pop("defaults")[0]) if "defaults" in raw else {"settings": {}, "methods": {}}
    return {key: {**base[key], **raw.get(key, {})} for key in ("settings", "methods")}


def test_image(size: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(0).rand(size, size, 3) * 255).astype(np.uint8))


def default_size(pipe: Any) -> int:
    network = getattr(pipe, "unet", None) or pipe.transformer
    return int(network.config.sample_size) * 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def denoisers(gap: str, pipes: dict, settings: dict, extra: dict, size: int) -> dict[str, PipelineDenoiser]:
    models = {}
    for name, raw in settings.items():
        setting = ModelSetting.from_config(name, raw)
        pipe = pipes[setting.model]
        image = test_image(size)
        prompt = "1" if gap == "moe" else REFINED if setting.prompt == "refined" else PROMPT
        cond = encode(pipe, setting, [prompt], height=size, width=size, num_frames=extra.get("frames"),
                      control_images=[image] if setting.control_scale else None,
                      ip_adapter_images=[image] if extra.get("ip_adapter") else None)
        models[name] = PipelineDenoiser(pipe, setting, cond, name=name)
    return models


def run_gap(gap: str, device: torch.device, dtype: torch.dtype, tiny: bool) -> dict:
    """Every method of one gap type: NFE, wall time, peak memory, whether latents and decoded output are finite."""
    file, build, extra = GAPS[gap]
    config = gap_config(file)
    if tiny:
        pipes = build()
    else:  # the real architectures, random weights initialised on the device (only the build: noise is drawn on CPU)
        with F.real_size(), torch.device(device):
            pipes = build()
    pipes = {name: pipe.to(device, dtype) for name, pipe in pipes.items()}
    some_pipe = next(iter(pipes.values()))
    size = default_size(some_pipe)
    models = denoisers(gap, pipes, config["settings"], extra, size)
    rows = {}
    for method, spec in config["methods"].items():
        resolved = resolve_method(method, spec, {"lam": T - 1}, models, T)
        final = resolved["roles"].get("final") or resolved["roles"].get("strong") or resolved["roles"]["model"]
        pipe = pipes[ModelSetting.from_config(final, config["settings"][final]).model]
        x, generators = initial_noise(pipe, [SEED], latent_shape(pipe, size, size, extra.get("frames")))
        schedule = schedule_from_diffusers(dict(pipe.scheduler.config), T)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        out = run_method(resolved, models, x.to(device), schedule, generators=generators)
        decoded = decode(pipe, out.x, output_type="np")
        synchronize(device)
        frames = np.asarray(decoded.frames if hasattr(decoded, "frames") else decoded.images)
        rows[method] = {"nfe": out.nfe, "wall_time_s": time.perf_counter() - start,
                        "peak_memory_gb": peak_memory_gb(device),
                        "finite": bool(torch.isfinite(out.x).all()) and bool(np.isfinite(frames).all())}
    return {"size": size, "frames": extra.get("frames"), "methods": rows}


def lambda_zero_gap(gap: str, device: torch.device) -> float:
    """max |Δ| of W2SD at λ = 0 (strong = weak = final = the gap's `strong` setting) vs diffusers' own pipeline
    with DDIMScheduler.from_config of the same scheduler config, from the same unit x_T; tiny float32 nets."""
    from w2sd.pipelines import w2sd_generate

    file, build, extra = GAPS[gap]
    settings = gap_config(file)["settings"]
    strong = ModelSetting.from_config("strong", settings["strong"])
    pipe = build()[strong.model].to(device)
    image, frames = test_image(F.SIZE), extra.get("frames")
    inputs = {"control_image": image} if extra.get("control") else {}
    inputs |= {"ip_adapter_image": image} if extra.get("ip_adapter") else {}
    prompt = "1" if gap == "moe" else (REFINED if strong.prompt == "refined" else PROMPT)
    output_type = "np" if gap == "moe" else "latent"  # DiTPipeline always decodes
    ours = w2sd_generate(strong=(pipe, strong), weak=(pipe, strong), prompt=prompt, T=T, lam=0, seed=SEED,
                         height=F.SIZE, width=F.SIZE, num_frames=frames, output_type=output_type, **inputs)
    ours = torch.as_tensor(ours.frames if frames else ours.images).cpu()
    twin, guidance = F.ddim_twin(pipe), strong.cfg
    if gap == "moe":  # DiTPipeline draws x_T from one generator, which equals our per-sample draw
        ref = twin(class_labels=[1], num_inference_steps=T, guidance_scale=guidance, output_type=output_type,
                   generator=torch.Generator().manual_seed(SEED)).images
        return float((ours - torch.as_tensor(ref)).abs().max())
    if extra.get("ip_adapter"):
        twin.set_ip_adapter_scale(strong.ip_adapter_scale)
    if strong.lora:  # the setting's LoRA scales, whatever state the call left the adapters in
        twin.set_adapters(list(strong.lora), list(strong.lora.values()))
    call = {"image": image, "controlnet_conditioning_scale": strong.control_scale} if extra.get("control") else \
        {"ip_adapter_image": image} if extra.get("ip_adapter") else {}
    ref = twin(prompt=prompt, num_inference_steps=T, guidance_scale=guidance, height=F.SIZE, width=F.SIZE,
               latents=F.unit_noise(pipe, SEED, frames).to(device), output_type="latent",
               **({"num_frames": frames} if frames else {}), **call)
    ref = ref.frames if frames else ref.images
    return float((ours - ref.cpu()).abs().max())


def device_checks(device: torch.device, dtype: torch.dtype) -> dict:
    """Offloaded pipelines and legs on two devices (tiny SD1.5 nets): each run's max |Δ| to the plain pipe."""
    from w2sd.pipelines import w2sd_generate

    def sample(strong, weak) -> torch.Tensor:
        return w2sd_generate(strong=(strong, {"cfg": 3.0}), weak=(weak, {"cfg": 1.0}), prompt=PROMPT, T=T, seed=SEED,
                             height=F.SIZE, width=F.SIZE, output_type="latent").images.cpu()

    reference = sample(F.sd15_pipeline(0).to(device, dtype), F.sd15_pipeline(1).to(device, dtype))
    second = torch.device("cuda:1") if torch.cuda.device_count() > 1 else torch.device("cpu")
    variants = {
        "model_cpu_offload": lambda p: p.enable_model_cpu_offload(device=device),
        "sequential_cpu_offload": lambda p: p.enable_sequential_cpu_offload(device=device),
    }
    results = {}
    for name, prepare in variants.items():
        strong, weak = F.sd15_pipeline(0).to(dtype=dtype), F.sd15_pipeline(1).to(dtype=dtype)
        try:
            prepare(strong), prepare(weak)
            results[name] = {"max_abs_diff": float((sample(strong, weak) - reference).abs().max())}
        except Exception as err:  # recorded, not raised: the smoke run reports every check
            results[name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    if device.type == "cuda":  # weak leg on the second device, in float32 there when that is the CPU
        weak_dtype = torch.float32 if second.type == "cpu" else dtype
        out = sample(F.sd15_pipeline(0).to(device, dtype), F.sd15_pipeline(1).to(second, weak_dtype))
        results[f"weak_on_{second}"] = {"max_abs_diff": float((out - reference).abs().max()),
                                        "finite": bool(torch.isfinite(out).all())}
    return results


def device_label(device: torch.device, tiny: bool) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{device.type}-{name}").strip("-").lower() + ("-tiny" if tiny else "")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_smoke", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="shrunk pipelines only, float32 on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--gaps", nargs="*", default=sorted(GAPS), choices=sorted(GAPS))
    parser.add_argument("--flow", nargs="*", default=sorted(FLOW_GAPS), choices=sorted(FLOW_GAPS),
                        help="flow presets to run (Flux, SD3.5, Wan); give none to skip")
    parser.add_argument("--out", type=Path, default=None, help="default: results/gpu_smoke/<device>.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    dtype = torch.float32 if args.tiny else getattr(torch, args.dtype)
    torch.set_grad_enabled(False)
    lambda_zero = {gap: lambda_zero_gap(gap, device) for gap in args.gaps}  # tiny float32 nets on the device
    lambda_zero |= {f"flow:{preset}": lambda_zero_flow(preset, device) for preset in args.flow}
    gaps = {}
    for gap in args.gaps:
        gaps[gap] = run_gap(gap, device, dtype, args.tiny)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for preset in args.flow:
        gaps[f"flow:{preset}"] = run_flow_gap(preset, device, dtype, args.tiny)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results = {"schema_version": RESULTS_SCHEMA_VERSION, "experiment": "gpu_smoke",
               "config": {"T": T, "lam": T - 1, "tiny": args.tiny, "dtype": str(dtype).removeprefix("torch."),
                          "device": str(device)},
               "metrics": {"gaps": gaps, "lambda_zero_max_abs_diff": lambda_zero,
                           "devices": device_checks(device, dtype)},
               "environment": {"python": platform.python_version(), "torch": torch.__version__,
                               "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
                               "device_name": device_label(device, args.tiny)}}
    out = args.out or ROOT / "results" / "gpu_smoke" / f"{device_label(device, args.tiny)}.json"
    atomic_write_json(out, results)
    for gap, row in gaps.items():
        for method, m in row["methods"].items():
            mem = "-" if m["peak_memory_gb"] is None else f"{m['peak_memory_gb']:.1f} GiB"
            print(f"{gap:14s} {method:12s} nfe={m['nfe']:3d} wall={m['wall_time_s']:7.2f}s mem={mem} "
                  f"finite={m['finite']}")
    print(f"λ = 0 max |Δ| vs diffusers DDIM (tiny, float32): {lambda_zero}\ndevices: {results['metrics']['devices']}"
          f"\n→ {out}")
    return results


if __name__ == "__main__":
    main()
