# Released DiT-MoE checkpoints (feizc/DiT-MoE) → a diffusers DiTPipeline folder + w2sd MoE weights (paper Table 3).
"""The released model (DiT-MoE's models.py) is DiT with every block MLP replaced by `moe`: a `gate` (MoEGate,
weight (E, D), softmax over all E experts, top-k kept without renormalising), E `experts` (MoeMLP: SwiGLU
`down_proj(silu(gate_proj x) * up_proj x)`, no biases) and one always-on `shared_experts` MoeMLP. Checkpoints are
`torch.save`d state dicts (or {"ema": …} / {"model": …} as DiT's train.py writes them). Key map:

    x_embedder.proj.*                 → pos_embed.proj.*          (pos_embed itself is the fixed 2-D sin-cos table:
                                                                    diffusers recomputes it)
    t_embedder.mlp.0/2.*              → transformer_blocks.N.norm1.emb.timestep_embedder.linear_1/2.*  (every N)
    y_embedder.embedding_table.weight → transformer_blocks.N.norm1.emb.class_embedder.embedding_table.weight
    blocks.N.adaLN_modulation.1.*     → transformer_blocks.N.norm1.linear.*
    blocks.N.attn.qkv.*               → transformer_blocks.N.attn1.to_q/to_k/to_v.* (split in thirds)
    blocks.N.attn.proj.*              → transformer_blocks.N.attn1.to_out.0.*
    blocks.N.moe.gate.weight          → transformer_blocks.N.ff.router.weight
    blocks.N.moe.experts.E.{up,gate}_proj.weight → transformer_blocks.N.ff.experts.E.net.0.proj.weight (diffusers'
                                        SwiGLU projects to [hidden | gate] and returns hidden · silu(gate))
    blocks.N.moe.experts.E.down_proj.weight      → transformer_blocks.N.ff.experts.E.net.2.weight
    blocks.N.moe.shared_experts.*     → transformer_blocks.N.ff.shared.net.* (same split)
    final_layer.adaLN_modulation.1.*  → proj_out_1.*;  final_layer.linear.* → proj_out_2.*

The one difference that remains is diffusers' DiT timestep features (frequencies over 127 instead of 128 of the 256
channels), which every diffusers DiT port shares. Run:
`python -m w2sd.pipelines.moe_convert CKPT OUT --num-heads 6 --vae /sd-vae-ft-mse` (DiT-MoE-S: 6 heads), then
`gap.models.base.path=OUT gap.models.base.moe.path=OUT/moe` (docs/tables.md)."""
from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from w2sd.pipelines.moe import LAYOUT_FILE, MoEFeedForward
from w2sd.results import atomic_write_text
from w2sd.validation import ConfigError


def load_released(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of a released checkpoint file (.pt/.pth via torch.load, or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist; download a DiT-MoE checkpoint (e.g. DiT-MoE-S) first")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ConfigError(f"{path} holds more than tensors (e.g. train.py's args); if you trust it, re-save its "
                              "weights: torch.save(torch.load(path, weights_only=False)['ema'], 'clean.pt')") from err
    for key in ("ema", "model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    return {k.removeprefix("module."): v for k, v in state.items()}


def released_sizes(state: Mapping[str, torch.Tensor], num_heads: int, sample_size: int | None = None) -> dict:
    """Architecture read off the weights' shapes (heads are not visible in them and must be given)."""
    try:
        patch = state["x_embedder.proj.weight"]
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
        experts = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.0\.moe\.experts\.(\d+)\.", k)))
        final = state["final_layer.linear.weight"]
        classes = state["y_embedder.embedding_table.weight"].shape[0]
        inner = state["blocks.0.moe.experts.0.gate_proj.weight"].shape[0]
    except (KeyError, ValueError) as err:
        raise ConfigError(f"not a DiT-MoE state dict (missing {err}); expected DiT-MoE's models.py keys such as "
                          "blocks.0.moe.gate.weight") from None
    hidden, in_channels, p = patch.shape[0], patch.shape[1], patch.shape[2]
    if hidden % num_heads:
        raise ConfigError(f"--num-heads {num_heads} does not divide the hidden size {hidden}")
    if sample_size is None:
        if "pos_embed" not in state:
            raise ConfigError("the checkpoint has no pos_embed to read the latent size from; pass --image-size")
        sample_size = round(state["pos_embed"].shape[1] ** 0.5) * p
    shared = state.get("blocks.0.moe.shared_experts.gate_proj.weight")
    return {"depth": depth, "hidden": hidden, "heads": num_heads, "patch": p, "in_channels": in_channels,
            "out_channels": final.shape[0] // (p * p), "classes": classes - 1,  # last row: CFG's null class
            "experts": experts, "inner": inner, "shared_inner": None if shared is None else shared.shape[0],
            "sample_size": sample_size}


def transformer_config(sizes: Mapping) -> dict:
    """diffusers DiTTransformer2DModel arguments for the released architecture (adaLN-Zero, LayerNorm eps 1e-6)."""
    return {"num_attention_heads": sizes["heads"], "attention_head_dim": sizes["hidden"] // sizes["heads"],
            "in_channels": sizes["in_channels"], "out_channels": sizes["out_channels"], "num_layers": sizes["depth"],
            "sample_size": sizes["sample_size"], "patch_size": sizes["patch"], "activation_fn": "gelu-approximate",
            "num_embeds_ada_norm": sizes["classes"], "norm_type": "ada_norm_zero", "norm_elementwise_affine": False,
            "norm_eps": 1e-6}


def moe_layout(sizes: Mapping) -> dict:
    """MoEFeedForward arguments (w2sd/pipelines/moe.py) that reproduce the released SparseMoeBlock."""
    return {"activation_fn": "swiglu", "inner_dim": sizes["inner"], "bias": False,
            "shared_inner_dim": sizes["shared_inner"], "gate": "softmax"}


def _swiglu(prefix: str, state: Mapping[str, torch.Tensor], out: str) -> dict[str, torch.Tensor]:
    return {f"{out}.net.0.proj.weight": torch.cat([state[f"{prefix}.up_proj.weight"],
                                                   state[f"{prefix}.gate_proj.weight"]]),
            f"{out}.net.2.weight": state[f"{prefix}.down_proj.weight"]}


def convert_state_dict(state: Mapping[str, torch.Tensor], sizes: Mapping) -> dict[str, torch.Tensor]:
    """Released DiT-MoE keys → diffusers DiT keys with w2sd's MoE feed-forward (see the module docstring)."""
    out = {"pos_embed.proj.weight": state["x_embedder.proj.weight"],
           "pos_embed.proj.bias": state["x_embedder.proj.bias"],
           "proj_out_1.weight": state["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": state["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": state["final_layer.linear.weight"], "proj_out_2.bias": state["final_layer.linear.bias"]}
    for n in range(sizes["depth"]):
        src, dst = f"blocks.{n}", f"transformer_blocks.{n}"
        emb = f"{dst}.norm1.emb"
        for kind in ("weight", "bias"):
            out[f"{emb}.timestep_embedder.linear_1.{kind}"] = state[f"t_embedder.mlp.0.{kind}"]
            out[f"{emb}.timestep_embedder.linear_2.{kind}"] = state[f"t_embedder.mlp.2.{kind}"]
            out[f"{dst}.norm1.linear.{kind}"] = state[f"{src}.adaLN_modulation.1.{kind}"]
            for name, part in zip(("to_q", "to_k", "to_v"), state[f"{src}.attn.qkv.{kind}"].chunk(3)):
                out[f"{dst}.attn1.{name}.{kind}"] = part
            out[f"{dst}.attn1.to_out.0.{kind}"] = state[f"{src}.attn.proj.{kind}"]
        out[f"{emb}.class_embedder.embedding_table.weight"] = state["y_embedder.embedding_table.weight"]
        out[f"{dst}.ff.router.weight"] = state[f"{src}.moe.gate.weight"]
        for e in range(sizes["experts"]):
            out.update(_swiglu(f"{src}.moe.experts.{e}", state, f"{dst}.ff.experts.{e}"))
        if sizes["shared_inner"]:
            out.update(_swiglu(f"{src}.moe.shared_experts", state, f"{dst}.ff.shared"))
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def build_transformer(state: Mapping[str, torch.Tensor], sizes: Mapping) -> torch.nn.Module:
    """A diffusers DiT with w2sd MoE layers holding the converted weights (strict: every key must match)."""
    from diffusers import DiTTransformer2DModel

    transformer = DiTTransformer2DModel(**transformer_config(sizes))
    for block in transformer.transformer_blocks:
        block.ff = MoEFeedForward(sizes["hidden"], sizes["experts"], **moe_layout(sizes))
    transformer.load_state_dict(convert_state_dict(state, sizes))
    return transformer.eval()


def convert(checkpoint: str | Path, out: str | Path, *, num_heads: int, vae: str | None = None,
            image_size: int | None = None, id2label: Mapping[int, str] | None = None) -> Path:
    """Write `out/moe/` (moe_transformer.safetensors + moe_config.json, for gap.models.base.moe.path) and, given a
    VAE folder (sd-vae-ft-mse, as DiT-MoE samples with), a DiTPipeline folder at `out` (gap.models.base.path)."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel
    from safetensors.torch import save_file

    out = Path(out)
    state = load_released(checkpoint)
    sizes = released_sizes(state, num_heads, None if image_size is None else image_size // 8)
    transformer = build_transformer(state, sizes)
    (out / "moe").mkdir(parents=True, exist_ok=True)
    save_file(transformer.state_dict(), str(out / "moe" / "moe_transformer.safetensors"))
    atomic_write_text(out / "moe" / LAYOUT_FILE, json.dumps(moe_layout(sizes), indent=2) + "\n")
    if vae is not None:
        # the pipeline's own transformer is the dense DiT the MoE layers replace at load time (loading.py)
        dense = DiTTransformer2DModel(**transformer_config(sizes))
        dense.load_state_dict({k: v for k, v in transformer.state_dict().items() if ".ff." not in k}, strict=False)
        scheduler = DDIMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02, num_train_timesteps=1000,
                                  clip_sample=False, set_alpha_to_one=False)  # DiT's training schedule
        DiTPipeline(transformer=dense, vae=AutoencoderKL.from_pretrained(vae), scheduler=scheduler).save_pretrained(out)
        if id2label:  # class-name prompts: DiTPipeline.from_pretrained reads id2label from model_index.json
            index = json.loads((out / "model_index.json").read_text())
            index["id2label"] = {str(k): v for k, v in id2label.items()}
            atomic_write_text(out / "model_index.json", json.dumps(index, indent=2) + "\n")
    return out


def read_labels(path: str) -> dict[int, str]:
    try:
        return {int(k): str(v) for k, v in json.loads(Path(path).read_text()).items()}
    except FileNotFoundError:
        raise ConfigError(f"--labels {path} does not exist; give a JSON file {{class id: label name}} or leave "
                          f"--labels out (prompts are then class ids)") from None
    except (ValueError, AttributeError) as err:
        raise ConfigError(f"--labels {path} is not a JSON object {{class id: label name}} ({err})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="released DiT-MoE checkpoint (.pt / .safetensors)")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--num-heads", type=int, required=True, help="attention heads (DiT-S 6, B 12, XL 16)")
    parser.add_argument("--vae", help="diffusers VAE folder (stabilityai/sd-vae-ft-mse) to write a DiTPipeline")
    parser.add_argument("--image-size", type=int, help="image side when the checkpoint has no pos_embed (256)")
    parser.add_argument("--labels", help="JSON file {class id: label name} for label-name prompts")
    args = parser.parse_args(argv)
    try:  # every input is checked before anything is written
        if not Path(args.checkpoint).is_file():
            raise ConfigError(f"checkpoint {args.checkpoint} does not exist; download a DiT-MoE checkpoint "
                              f"(feizc/DiT-MoE, e.g. DiT-MoE-S) first")
        if args.vae is not None and not (Path(args.vae) / "config.json").is_file():
            raise ConfigError(f"--vae {args.vae} is not a diffusers VAE folder (no config.json); e.g. "
                              f"`hf download stabilityai/sd-vae-ft-mse --local-dir {args.vae}`")
        labels = read_labels(args.labels) if args.labels else None
        print(convert(args.checkpoint, args.out, num_heads=args.num_heads, vae=args.vae, image_size=args.image_size,
                      id2label=labels))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
