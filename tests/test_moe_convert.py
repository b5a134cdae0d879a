# Released DiT-MoE checkpoint → diffusers DiT + w2sd MoE: the converted model computes the released network.
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as PF  # noqa: E402

from w2sd.pipelines.loading import load_pipeline  # noqa: E402
from w2sd.pipelines.moe import set_routing  # noqa: E402
from w2sd.pipelines.moe_convert import build_transformer, convert, released_sizes  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

DEPTH, HIDDEN, HEADS, PATCH, EXPERTS, CLASSES, LATENT = 2, 16, 2, 2, 4, 10, 8


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """MAE's fixed 2-D sin-cos table (DiT's get_2d_sincos_pos_embed): np.meshgrid(grid_w, grid_h), the first half
    of the channels from its first array (the column coordinate), the second half from the row coordinate."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2))
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    first, second = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one_d(dim // 2, first), one_d(dim // 2, second)], axis=1)


def released_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the names and shapes of DiT-MoE's models.py: DiT(input_size=8, patch_size=2,
    hidden_size=16, depth=2, num_classes=10, num_experts=4, learn_sigma=True), DiTBlock.moe = SparseMoeBlock
    (MoEGate weight (E, D); MoeMLP experts gate/up (4D, D), down (D, 4D); shared_experts MoeMLP with 2D)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.3

    d, grid = HIDDEN, LATENT // PATCH
    s = {"x_embedder.proj.weight": r(d, 4, PATCH, PATCH), "x_embedder.proj.bias": r(d),
         "pos_embed": torch.from_numpy(sincos_2d(d, grid)).float()[None],
         "t_embedder.mlp.0.weight": r(d, 256), "t_embedder.mlp.0.bias": r(d),
         "t_embedder.mlp.2.weight": r(d, d), "t_embedder.mlp.2.bias": r(d),
         "y_embedder.embedding_table.weight": r(CLASSES + 1, d),
         "final_layer.linear.weight": r(PATCH * PATCH * 8, d), "final_layer.linear.bias": r(PATCH * PATCH * 8),
         "final_layer.adaLN_modulation.1.weight": r(2 * d, d), "final_layer.adaLN_modulation.1.bias": r(2 * d)}
    for n in range(DEPTH):
        b = f"blocks.{n}"
        s.update({f"{b}.attn.qkv.weight": r(3 * d, d), f"{b}.attn.qkv.bias": r(3 * d),
                  f"{b}.attn.proj.weight": r(d, d), f"{b}.attn.proj.bias": r(d),
                  f"{b}.adaLN_modulation.1.weight": r(6 * d, d), f"{b}.adaLN_modulation.1.bias": r(6 * d),
                  f"{b}.moe.gate.weight": r(EXPERTS, d)})
        for name, inner in [(f"experts.{e}", 4 * d) for e in range(EXPERTS)] + [("shared_experts", 2 * d)]:
            s.update({f"{b}.moe.{name}.gate_proj.weight": r(inner, d), f"{b}.moe.{name}.up_proj.weight": r(inner, d),
                      f"{b}.moe.{name}.down_proj.weight": r(d, inner)})
    return s


def reference_forward(s: dict, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, route: str) -> torch.Tensor:
    """The released DiT-MoE forward (eval mode) written out from models.py's definitions. Timestep features use
    diffusers' DiT frequencies exp(−ln(10⁴)·i/127) (the one deliberate difference, see moe_convert)."""
    n, d = x.shape[0], HIDDEN
    tok = F.conv2d(x, s["x_embedder.proj.weight"], s["x_embedder.proj.bias"], stride=PATCH).flatten(2).transpose(1, 2)
    tok = tok + s["pos_embed"]
    freqs = torch.exp(-math.log(10000) * torch.arange(128, dtype=torch.float32) / 127)
    args = t[:, None].float() * freqs[None]
    temb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    c = F.linear(F.silu(F.linear(temb, s["t_embedder.mlp.0.weight"], s["t_embedder.mlp.0.bias"])),
                 s["t_embedder.mlp.2.weight"], s["t_embedder.mlp.2.bias"]) + s["y_embedder.embedding_table.weight"][y]

    def mlp(prefix: str, h: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(h, s[f"{prefix}.gate_proj.weight"]), F.linear(h, s[f"{prefix}.up_proj.weight"])
        return F.linear(F.silu(gate) * up, s[f"{prefix}.down_proj.weight"])

    def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, (d,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]

    for b in (f"blocks.{i}" for i in range(DEPTH)):
        sh1, sc1, g1, sh2, sc2, g2 = F.linear(F.silu(c), s[f"{b}.adaLN_modulation.1.weight"],
                                              s[f"{b}.adaLN_modulation.1.bias"]).chunk(6, dim=1)
        qkv = F.linear(modulate(tok, sh1, sc1), s[f"{b}.attn.qkv.weight"], s[f"{b}.attn.qkv.bias"])
        q, k, v = qkv.reshape(n, -1, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // HEADS), dim=-1) @ v
        att = F.linear(att.transpose(1, 2).reshape(n, -1, d), s[f"{b}.attn.proj.weight"], s[f"{b}.attn.proj.bias"])
        tok = tok + g1[:, None] * att
        h = modulate(tok, sh2, sc2).reshape(-1, d)
        scores = torch.softmax(F.linear(h, s[f"{b}.moe.gate.weight"]), dim=-1)
        idx = scores.topk(2, dim=-1, largest=route == "top").indices
        every = torch.stack([mlp(f"{b}.moe.experts.{e}", h) for e in range(EXPERTS)], dim=1)  # (tokens, E, D)
        moe = (every.gather(1, idx[..., None].expand(-1, -1, d)) * scores.gather(1, idx)[..., None]).sum(1)
        tok = tok + g2[:, None] * (moe + mlp(f"{b}.moe.shared_experts", h)).reshape(tok.shape)
    shift, scale = F.linear(F.silu(c), s["final_layer.adaLN_modulation.1.weight"],
                            s["final_layer.adaLN_modulation.1.bias"]).chunk(2, dim=1)
    out = F.linear(modulate(tok, shift, scale), s["final_layer.linear.weight"], s["final_layer.linear.bias"])
    g = LATENT // PATCH
    out = torch.einsum("nhwpqc->nchpwq", out.reshape(n, g, g, PATCH, PATCH, 8))
    return out.reshape(n, 8, LATENT, LATENT)


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, LATENT, LATENT, generator=gen), torch.tensor([981, 17]), torch.tensor([3, CLASSES])


@pytest.mark.parametrize("route", ["top", "bottom"])
def test_converted_dit_moe_matches_the_released_forward(route) -> None:
    state = released_state()
    sizes = released_sizes(state, HEADS)
    assert (sizes["depth"], sizes["experts"], sizes["sample_size"], sizes["classes"]) == (DEPTH, EXPERTS, LATENT,
                                                                                        CLASSES)
    model = build_transformer(state, sizes)
    set_routing(model, route, 2)
    x, t, y = inputs()
    with torch.no_grad():
        ours = model(x, timestep=t, class_labels=y).sample
    torch.testing.assert_close(ours, reference_forward(state, x, t, y, route), atol=2e-5, rtol=1e-4)


def test_converted_folder_loads_through_the_generation_loader(tmp_path) -> None:
    """convert() output as the Table 3 preset reads it: gap.models.base.{path, moe.path} via load_pipeline."""
    import torch as th

    state = released_state(seed=2)
    th.save({"ema": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ckpt.pt")  # DiT train.py layout
    PF.vae().save_pretrained(tmp_path / "vae")
    out = convert(tmp_path / "ckpt.pt", tmp_path / "dit_moe_s", num_heads=HEADS, vae=str(tmp_path / "vae"),
                  id2label={7: "goldfish, Carassius auratus"})
    spec = {"pipeline": "DiTPipeline", "path": str(out), "moe": {"num_experts": EXPERTS, "path": str(out / "moe")}}
    pipe = load_pipeline("gap.models.base", spec)
    set_routing(pipe.transformer, "bottom", 2)
    x, t, y = inputs()
    with torch.no_grad():
        ours = pipe.transformer(x, timestep=t, class_labels=y).sample
    torch.testing.assert_close(ours, reference_forward(state, x, t, y, "bottom"), atol=2e-5, rtol=1e-4)
    assert pipe.get_label_ids(["goldfish"]) == [7]


def test_a_state_dict_of_another_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a DiT-MoE state dict"):
        released_sizes({"x_embedder.proj.weight": torch.zeros(16, 4, 2, 2), "blocks.0.mlp.fc1.weight": torch.zeros(1)},
                       HEADS)
    with pytest.raises(ConfigError, match="--num-heads 3 does not divide"):
        released_sizes(released_state(), 3)


def test_the_command_refuses_missing_inputs_in_one_line_before_writing(tmp_path, capsys) -> None:
    from w2sd.pipelines.moe_convert import main

    checkpoint = tmp_path / "moe.pt"
    checkpoint.write_bytes(b"not read: the labels are checked first")
    cases = [([str(tmp_path / "absent.pt")], "checkpoint .*absent.pt does not exist"),
             ([str(checkpoint), "--labels", str(tmp_path / "absent.json")], "--labels .*absent.json does not exist"),
             ([str(checkpoint), "--vae", str(tmp_path)], "is not a diffusers VAE folder")]
    for args, message in cases:
        assert main([args[0], str(tmp_path / "out"), "--num-heads", "6", *args[1:]]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
