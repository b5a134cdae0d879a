# Small MLP ε-networks trained with Lightning on samples of a (biased) mixture, cached by their training config.
from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import torch
from torch import nn

from toy.gmm import GaussianMixture
from w2sd.results import atomic_torch_save, config_hash, quarantine
from w2sd.schedule import DiscreteSchedule

log = logging.getLogger(__name__)


class EpsMLP(nn.Module):
    """ε(x, t) with a sinusoidal embedding of t / N concatenated to x."""

    def __init__(self, dim: int, hidden: int = 128, layers: int = 3, embed_dim: int = 32) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        blocks: list[nn.Module] = []
        width = dim + embed_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t_frac: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), self.embed_dim // 2, device=x.device))
        angles = t_frac[:, None] * freqs[None] * 2 * math.pi
        return self.net(torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1))


class MLPEpsDenoiser:
    """Turns a trained EpsMLP into the core's `eps(x, t)` callable."""

    def __init__(self, net: EpsMLP, num_train_timesteps: int) -> None:
        self.net = net.eval()
        self.n = num_train_timesteps

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        t_frac = torch.full((x.shape[0],), t / self.n, dtype=torch.float32, device=x.device)
        return self.net(x.float(), t_frac).to(x.dtype)


def train_eps_mlp(
    mixture: GaussianMixture,
    schedule: DiscreteSchedule,
    *,
    hidden: int,
    layers: int,
    train_samples: int,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    cache_dir: Path,
) -> tuple[EpsMLP, dict]:
    """Train (or load from `cache_dir`) an ε-MLP on `train_samples` draws from `mixture`; returns (net, info)."""
    spec = {
        "means": mixture.means.tolist(), "std": mixture.std, "weights": mixture.weights.tolist(),
        "alphas_cumprod_sum": round(float(schedule.alphas_cumprod.sum()), 10),
        "num_train_timesteps": schedule.num_train_timesteps, "hidden": hidden, "layers": layers,
        "train_samples": train_samples, "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        # nets cached before the initialisation was seeded depended on the caller's RNG state: never reuse them
        "init": "seeded",
    }
    key = config_hash(spec)
    path = Path(cache_dir) / f"eps_mlp_{key}.pt"
    if path.exists():
        net = EpsMLP(mixture.dim, hidden, layers)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state["state_dict"])
            return net, {"checkpoint": path.name, "config_hash": key, "cached": True,
                         "final_loss": state["final_loss"]}
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:
            # a truncated or foreign file: set it aside (not delete: it may be evidence) and train afresh
            moved = quarantine(path)
            log.warning("cached checkpoint %s is unreadable (%s: %s); moved it to %s and training again",
                        path, type(err).__name__, str(err).splitlines()[0] if str(err) else "", moved)
    import lightning as L  # here, not at module level: importing Lightning costs seconds the exact-score path skips

    from toy.trained_module import EpsMLPModule

    L.seed_everything(seed, workers=False, verbose=False)
    net = EpsMLP(mixture.dim, hidden, layers)  # after seeding: the init is part of what `seed` fixes
    data = mixture.sample(train_samples, torch.Generator().manual_seed(seed)).float()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=batch_size, shuffle=True,
                                         drop_last=True, generator=torch.Generator().manual_seed(seed))
    module = EpsMLPModule(net, schedule.alphas_cumprod, lr)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, deterministic=True)
    trainer.fit(module, loader)
    final_loss = float(sum(module.losses[-100:]) / max(1, len(module.losses[-100:])))
    atomic_torch_save({"state_dict": net.state_dict(), "spec": spec, "final_loss": final_loss}, path)
    # the file name only: the cache folder is a local path (paths.cache_dir), results must not carry it
    return net, {"checkpoint": path.name, "config_hash": key, "cached": False, "final_loss": final_loss}
