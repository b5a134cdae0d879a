# Mixture-of-experts feed-forward for DiT blocks and the routing switch (top-k vs bottom-k experts, paper Tab. 3).
"""DiT-MoE (Fei et al. 2024) replaces each transformer block's MLP by a router over E expert MLPs and sends every
token to its k best-scored experts. W2SD's MoE pair is the same network routed to the top-2 (strong) or the
2 lowest-scored ("least optimal", weak) of 8 experts. diffusers has no MoE DiT, so `install_moe` swaps the
feed-forward of a diffusers DiT for `MoEFeedForward` and `set_routing` chooses which end of the router ranking
every MoE layer uses."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers.models.attention import FeedForward
from torch import nn

from w2sd.validation import ConfigError, check_choice

ROUTES = ("top", "bottom")
GATES = ("topk_softmax", "softmax")
LAYOUT_FILE = "moe_config.json"  # expert layout written beside converted weights (w2sd/pipelines/moe_convert.py)


class MoEFeedForward(nn.Module):
    """Router + `num_experts` MLPs; each token goes to k experts, mixed by gate weights from the router logits.

    gate="topk_softmax": softmax over the k chosen logits (weights sum to 1); "softmax": the chosen experts' entries
    of the softmax over all experts, not renormalised (DiT-MoE's released MoEGate). `shared_inner_dim` adds an
    always-on shared expert (DiT-MoE's shared_experts); `activation_fn="swiglu"` with `bias=False` is its expert MLP.
    """

    def __init__(self, dim: int, num_experts: int, activation_fn: str = "gelu-approximate", k: int = 2, *,
                 inner_dim: int | None = None, bias: bool = True, shared_inner_dim: int | None = None,
                 gate: str = "topk_softmax") -> None:
        super().__init__()
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(dim, activation_fn=activation_fn, inner_dim=inner_dim, bias=bias)
                                     for _ in range(num_experts))
        self.shared = FeedForward(dim, activation_fn=activation_fn, inner_dim=shared_inner_dim, bias=bias) \
            if shared_inner_dim else None
        self.gate = check_choice("moe.gate", gate, GATES)
        self.route, self.k = "top", k

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        logits = self.router(flat)
        chosen = logits.topk(self.k, dim=-1, largest=self.route == "top").indices
        if self.gate == "softmax":
            weights = torch.softmax(logits, dim=-1).gather(-1, chosen)
        else:
            weights = torch.softmax(logits.gather(-1, chosen), dim=-1)
        out = torch.zeros_like(flat) if self.shared is None else self.shared(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, expert(flat[rows]) * weights[rows, slot, None])
        return out.reshape(hidden_states.shape)


def moe_layers(model: nn.Module) -> list[MoEFeedForward]:
    return [m for m in model.modules() if isinstance(m, MoEFeedForward)]


def install_moe(transformer: nn.Module, num_experts: int, state_path: str | None = None) -> int:
    """Replace every transformer block's `ff` by an MoE layer; load a state dict in this layout if given.

    Returns the number of MoE layers. Weights of a real DiT-MoE checkpoint must first be converted to this module
    layout (`transformer_blocks.N.ff.router.weight`, `…ff.experts.E.net.*`) by w2sd.pipelines.moe_convert; a
    folder holding `moe_config.json` beside the weights gives the expert layout (SwiGLU experts, shared expert,
    gate), otherwise the experts copy the block's own feed-forward."""
    blocks = [b for b in transformer.modules() if isinstance(getattr(b, "ff", None), FeedForward)]
    if not blocks:
        raise ConfigError(f"{type(transformer).__name__} has no transformer blocks with a feed-forward to turn into "
                          "experts; the MoE gap needs a DiT-style transformer")
    folder = Path(state_path) if state_path is not None and Path(state_path).is_dir() else None
    layout = json.loads((folder / LAYOUT_FILE).read_text()) if folder and (folder / LAYOUT_FILE).is_file() else {}
    for block in blocks:
        dim = block.ff.net[0].proj.in_features
        block.ff = MoEFeedForward(dim, num_experts, **{"activation_fn": _activation_name(block.ff), **layout})
    if state_path is not None:
        from safetensors.torch import load_file

        file = folder / "moe_transformer.safetensors" if folder else Path(state_path)
        transformer.load_state_dict(load_file(str(file)))
    return len(blocks)


def _activation_name(ff: FeedForward) -> str:
    act = ff.net[0]
    name = type(act).__name__.lower()
    if name == "gelu":
        return "gelu-approximate" if getattr(act, "approximate", "none") == "tanh" else "gelu"
    return name


def set_routing(model: nn.Module, route: str, k: int) -> None:
    """Route every MoE layer of `model` to its k highest- (`top`) or lowest-scored (`bottom`) experts."""
    check_choice("moe.route", route, ROUTES)
    layers = moe_layers(model)
    if not layers:
        raise ConfigError("moe routing was set but the model has no MoE layers; load it with a `moe:` spec")
    if not 1 <= k <= layers[0].num_experts:
        raise ConfigError(f"moe.k={k} must be in [1, {layers[0].num_experts}] (the number of experts)")
    for layer in layers:
        layer.route, layer.k = route, k
