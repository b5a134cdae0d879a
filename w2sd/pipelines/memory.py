# What a generation preset costs before any weight loads: parameters per component, peak weight memory, offload advice.
"""Parameter counts come from the checkpoint itself when it is on disk (the safetensors headers of each component
folder under a local `path` or the HF cache snapshot: exact, and nothing is read beyond the headers), else from the
model card's stated sizes (`CARD_PARAMETERS`, marked "≈ card" in the report). A model spec loads a whole pipeline,
so strong + weak of a weight gap hold two transformers and two sets of text encoders; a LoRA, CFG or guidance gap
holds one."""
from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

COMPONENTS = ("transformer", "unet", "text_encoder", "text_encoder_2", "text_encoder_3", "vae")
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Stated sizes (billions of parameters) for checkpoints whose weights are not here; model cards and their
# safetensors listings (FLUX.1: "12 billion parameter" transformer, T5-XXL encoder 4.76B, CLIP-L 0.12B; SD3.5 Large
# 8.1B, Medium 2.5B MMDiT, CLIP-G 0.69B; Wan2.1 T2V 14B and 1.3B, UMT5-XXL encoder 5.7B).
_FLUX = {"transformer": 11.9, "text_encoder": 0.123, "text_encoder_2": 4.76, "vae": 0.084}
_SD35 = {"text_encoder": 0.124, "text_encoder_2": 0.695, "text_encoder_3": 4.76, "vae": 0.084}
_WAN = {"text_encoder": 5.68, "vae": 0.127}
CARD_PARAMETERS: dict[str, dict[str, float]] = {
    "black-forest-labs/FLUX.1-dev": _FLUX,
    "black-forest-labs/FLUX.1-schnell": _FLUX,
    "stabilityai/stable-diffusion-3.5-large": {"transformer": 8.1, **_SD35},
    "stabilityai/stable-diffusion-3.5-medium": {"transformer": 2.5, **_SD35},
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": {"transformer": 14.0, **_WAN},
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {"transformer": 1.3, **_WAN},
}


def safetensors_parameters(path: Path) -> int:
    """Number of parameters in a .safetensors file, read from its header only."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, info in header.items():
        if name != "__metadata__":
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            total += count
    return total


def _component_folder(spec: Mapping, component: str) -> Path | None:
    """The folder of one component on disk: under a local path, or in the HF cache snapshot of the id."""
    if spec.get("path"):
        folder = Path(spec["path"]) / component
        return folder if folder.is_dir() else None
    if spec.get("id"):
        try:
            config = try_to_load_from_cache(spec["id"], f"{component}/config.json")
        except ValueError:
            return None
        return Path(config).parent if isinstance(config, str) else None
    return None


def component_parameters(spec: Mapping) -> tuple[dict[str, float], str]:
    """(component → billions of parameters, where the counts come from: "checkpoint" or "≈ card" or "unknown")."""
    counts: dict[str, float] = {}
    for component in COMPONENTS:
        folder = _component_folder(spec, component)
        files = sorted(folder.glob("*.safetensors")) if folder is not None else []
        if files:
            counts[component] = sum(safetensors_parameters(f) for f in files) / 1e9
    if counts:
        return counts, "checkpoint"
    card = CARD_PARAMETERS.get(str(spec.get("id")))
    return (dict(card), "≈ card") if card else ({}, "unknown")


def weight_memory_lines(models: Mapping[str, Mapping], used: list[str], device_gb: float | None) -> list[str]:
    """Report lines: weight memory of every model a preset loads (in its dtype), their sum against the device, and
    which offload to use when they do not fit together."""
    lines, total, largest, unknown = ["memory (weights only; activations come on top):"], 0.0, ("", 0.0), []
    for name in used:
        spec = models[name]
        counts, source = component_parameters(spec)
        dtype = spec.get("dtype", "float32")
        if not counts:
            unknown.append(name)
            lines.append(f"  {name}: {spec.get('id') or spec.get('path')} — parameter count unknown (weights not "
                         "here and no model-card size on record)")
            continue
        gb = {c: n * BYTES.get(dtype, 4) for c, n in counts.items()}
        network = max(gb, key=lambda c: gb[c] if c in ("transformer", "unet") else -1)
        total += sum(gb.values())
        if gb[network] > largest[1]:
            largest = (f"{name}.{network}", gb[network])
        parts = ", ".join(f"{c} {v:.1f}" for c, v in gb.items())
        lines.append(f"  {name}: {sum(gb.values()):.1f} GB in {dtype} ({parts}; {source})")
    fits = "" if device_gb is None else (" — fits" if total <= device_gb else " — does NOT fit")
    where = "" if device_gb is None else f" on a {device_gb:g} GB device"
    together = "strong + weak together" if len(used) > 1 else "one pipeline serves every setting"
    lines.append(f"  {together}: {total:.1f} GB{where}{fits}" + (
        f" (without {', '.join(unknown)})" if unknown else ""))
    if device_gb is not None and total > device_gb:
        if largest[1] < device_gb:
            lines.append(f"  offload: set gap.models.<name>.offload=model (each network moves to the GPU for its own "
                         f"calls; peak ≈ the largest network, {largest[0]} {largest[1]:.1f} GB, plus activations)")
        else:
            lines.append(f"  offload: set gap.models.<name>.offload=sequential (even the largest network, {largest[0]} "
                         f"{largest[1]:.1f} GB, does not fit {device_gb:g} GB; layers stream to the GPU, slowly)")
    return lines


def device_memory_gb(configured: Any) -> float | None:
    """The device to plan for: pipeline.device_memory_gb when set, else the first CUDA device, else None."""
    if configured is not None:
        return float(configured)
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 1e9
    return None
