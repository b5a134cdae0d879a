# Model state a W2SD call changes per leg (LoRA scales, IP-Adapter scale, MoE routing), set and restored in pairs.
"""Each leg of a W2SD step runs the same network under another setting, so the call switches LoRA adapters, the
IP-Adapter scale and MoE routing many times. `preserved(pipes)` snapshots all of that state on entry and writes it
back on exit — also when the call raises — so the user's pipeline afterwards is exactly the one they handed in
(diffusers' guiders pair `prepare_models` / `cleanup_models` the same way). `Switch` sets a leg's state and, within
one call, skips what it set last; the memo lives in the call, not on the modules, so nothing goes stale when the
user calls `set_adapters` between calls."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from w2sd.pipelines.moe import moe_layers, set_routing

# pipeline attributes whose modules may carry LoRA layers, IP-Adapter processors or MoE layers
STATEFUL_MODULES = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "controlnet")


def loaded_adapters(module: nn.Module) -> set[str]:
    return set(getattr(module, "peft_config", None) or {})


def ip_adapter_processors(network: nn.Module) -> list[Any]:
    """Attention processors that carry an IP-Adapter scale (a list, one entry per loaded adapter)."""
    processors = getattr(network, "attn_processors", None) or {}
    return [p for p in processors.values() if isinstance(getattr(p, "scale", None), list) and hasattr(p, "to_k_ip")]


def _snapshot_module(module: nn.Module) -> Callable[[], None]:
    """The module's LoRA (active adapters, enabled flag, scaling, trainability), IP-Adapter scales and MoE routing,
    as a function that writes them back."""
    layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
    lora = [(m, m._active_adapter, m._disable_adapters, dict(getattr(m, "scaling", {}))) for m in layers]
    grads = [(p, p.requires_grad) for m in layers for name in m.adapter_layer_names
             for p in getattr(m, name).parameters()]
    ip = [(p, list(p.scale)) for p in ip_adapter_processors(module)]
    moe = [(m, m.route, m.k) for m in moe_layers(module)]

    def restore() -> None:
        for m, active, disabled, scaling in lora:
            m._active_adapter, m._disable_adapters = active, disabled
            if hasattr(m, "scaling"):
                m.scaling.clear()
                m.scaling.update(scaling)
        for p, requires_grad in grads:
            p.requires_grad_(requires_grad)
        for p, scale in ip:
            p.scale[:] = scale
        for m, route, k in moe:
            m.route, m.k = route, k

    return restore


def stateful_modules(pipes: Iterable[Any]) -> list[nn.Module]:
    """Distinct modules of the pipes whose state a call may change (pipes often share a UNet)."""
    seen: dict[int, nn.Module] = {}
    for pipe in pipes:
        for attr in STATEFUL_MODULES:
            module = getattr(pipe, attr, None)
            if isinstance(module, nn.Module):
                seen.setdefault(id(module), module)
    return list(seen.values())


@contextmanager
def preserved(pipes: Iterable[Any]) -> Iterator[None]:
    """Snapshot the per-leg state of every pipe's modules; restore it on exit, whatever happened inside."""
    restores = [_snapshot_module(m) for m in stateful_modules(pipes)]
    try:
        yield
    finally:
        for restore in restores:
            restore()


class Switch:
    """Puts modules into a leg's state. With `memo` (inside one `preserved` call) it skips a module already in the
    requested state because this switch put it there; without, it always sets (safe for stand-alone denoisers)."""

    def __init__(self, memo: bool = True) -> None:
        self.memo = memo
        self.last: dict[tuple[int, str], Any] = {}

    def _changed(self, module: nn.Module, kind: str, state: Any) -> bool:
        key = (id(module), kind)
        if self.memo and key in self.last and self.last[key] == state:
            return False
        self.last[key] = state
        return True

    def lora(self, module: nn.Module, scales: Mapping[str, float] | None) -> None:
        """Set the module's LoRA adapters to `scales` (None: adapters off)."""
        if not loaded_adapters(module):
            return
        state = None if scales is None else tuple(sorted(scales.items()))
        if not self._changed(module, "lora", state):
            return
        if state is None:
            set_adapter_layers(module, enabled=False)
        else:
            set_adapter_layers(module, enabled=True)
            set_weights_and_activate_adapters(module, [n for n, _ in state], [w for _, w in state])

    def ip_adapter_scale(self, pipe: Any, network: nn.Module, scale: float) -> None:
        if ip_adapter_processors(network) and self._changed(network, "ip_adapter", scale):
            pipe.set_ip_adapter_scale(scale)

    def moe(self, network: nn.Module, routing: tuple[str, int] | None) -> None:
        if routing is not None and self._changed(network, "moe", routing):
            set_routing(network, *routing)
