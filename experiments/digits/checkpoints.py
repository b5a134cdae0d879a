# Checkpoints keyed by the hash of the training config that produced them, with a loud error on any mismatch.
"""A checkpoint file `<prefix>-<config_hash>.pt` holds {"spec", "config_hash", "state_dict"}; weights are stored in
float16 (the committed set must stay under 10 MB) and loaded back as float32."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from w2sd.results import atomic_torch_save, config_hash
from w2sd.validation import ConfigError


def checkpoint_path(directory: Path, prefix: str, spec: dict) -> Path:
    return Path(directory) / f"{prefix}-{config_hash(spec)}.pt"


def save_checkpoint(directory: Path, prefix: str, spec: dict, net: nn.Module, info: dict | None = None) -> Path:
    state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    payload = {"spec": spec, "config_hash": config_hash(spec), "state_dict": state, "info": info or {}}
    return atomic_torch_save(payload, checkpoint_path(directory, prefix, spec))


def read_checkpoint(path: Path) -> dict:
    """Load a checkpoint and check that its stored spec still hashes to its recorded hash and file name."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    recorded, actual = payload.get("config_hash"), config_hash(payload.get("spec"))
    if recorded != actual or not Path(path).stem.endswith(f"-{recorded}"):
        raise ConfigError(f"checkpoint {path} records config hash {recorded} but its training config hashes to "
                          f"{actual}; delete it and retrain with train=true")
    return payload


def load_checkpoint(directory: Path, prefix: str, spec: dict, net: nn.Module) -> dict:
    """Fill `net` with the weights trained under exactly `spec`; raise ConfigError when they are absent or differ."""
    path = checkpoint_path(directory, prefix, spec)
    if not path.exists():
        raise ConfigError(f"no checkpoint for training config {config_hash(spec)} in {directory}; "
                          f"train it with train=true (or restore the committed file {path.name})")
    payload = read_checkpoint(path)
    if payload["spec"] != spec:
        raise ConfigError(f"checkpoint {path.name} was trained with a different config than this run asks for; "
                          f"retrain with train=true")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    return payload
