# Lightning training of the digit UNets on CPU: ε- or velocity-matching loss, label dropout for CFG, EMA, snapshots.
"""One run saves the EMA weights at each requested step count (that is how the short / medium / long models of a
training-length study share one run). With the default constant learning rate the snapshot at step k is exactly
what a k-step run of the same config would give; a spec with `lr_decay_steps: N` decays the rate along a cosine
from `lr` to 0 over N steps, and its snapshot at k < N is the k-step point of that N-step schedule (N is in every
snapshot's spec). Each snapshot is stored under the hash of its own spec (the shared spec plus `steps: k`), with
the run's wall and CPU seconds up to it in its info."""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from experiments.digits.checkpoints import save_checkpoint
from experiments.digits.unet import TinyUNet
from w2sd.ddim import Prediction
from w2sd.schedule import make_betas


def build_unet(spec: dict) -> TinyUNet:
    """The net of a spec; `net.temporal_attention: true` (clip nets) attends over the data's `frames`."""
    net = spec["net"]
    frames = spec["data"]["frames"] if net.get("temporal_attention") else 0
    return TinyUNet(dims=net["dims"], channels=tuple(net["channels"]), num_classes=net["num_classes"],
                    emb_dim=net["emb_dim"], temporal_attention=frames, scale_shift=net.get("scale_shift", False))


def training_alphas_cumprod(schedule: dict) -> torch.Tensor:
    betas = make_betas(schedule["beta_schedule"], schedule["beta_start"], schedule["beta_end"],
                       schedule["num_train_timesteps"])
    return torch.cumprod(1.0 - betas, 0).float()


@dataclass(frozen=True)
class TrainingLevels:
    """The noise level of each training index 0…N−1 — x = α·x₀ + σ·ε, the net sees `timesteps`/N — and what the net
    learns. VP (a spec schedule of DDPM betas): timestep t, ε. Rectified flow (`kind: flow`): σ = (t + 1)/N uniform
    on (0, 1] (the plain rectified-flow objective; the sampler's grid shift is a sampling choice), timestep σ·N as
    FlowMatchEulerDiscreteScheduler hands it to the net, velocity v = ε − x₀."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    timesteps: torch.Tensor
    prediction: Prediction

    @classmethod
    def of(cls, schedule: dict) -> TrainingLevels:
        n = schedule["num_train_timesteps"]
        if schedule.get("kind") == "flow":
            steps = torch.arange(1, n + 1)
            sigma = steps.float() / n
            return cls(1.0 - sigma, sigma, steps, "velocity")
        a = training_alphas_cumprod(schedule)
        return cls(a.sqrt(), (1 - a).sqrt(), torch.arange(n), "epsilon")


class DiffusionModule(L.LightningModule):
    """ε- or velocity-prediction loss at uniform training indices; labels are replaced by the null class with prob.
    `cond_dropout` (always, for an unconditional net); an EMA copy of the net is what gets saved. The learning rate
    is constant, or (lr_decay_steps = N) a cosine from lr to 0 over N steps."""

    def __init__(self, net: TinyUNet, levels: TrainingLevels, lr: float, cond_dropout: float,
                 ema_decay: float, lr_decay_steps: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("alpha", levels.alpha)
        self.register_buffer("sigma", levels.sigma)
        self.register_buffer("timesteps", levels.timesteps)
        self.prediction = levels.prediction
        self.lr, self.cond_dropout, self.ema_decay = lr, cond_dropout, ema_decay
        self.lr_decay_steps = lr_decay_steps

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x0, labels = batch
        n = self.alpha.shape[0]
        t = torch.randint(0, n, (x0.shape[0],), device=x0.device)
        shape = (-1, *([1] * (x0.dim() - 1)))
        alpha, sigma = self.alpha[t].view(shape), self.sigma[t].view(shape)
        eps = torch.randn_like(x0)
        drop = torch.rand(labels.shape, device=labels.device) < self.cond_dropout
        labels = torch.where(drop | (self.net.num_classes == 0), torch.full_like(labels, self.net.null_class), labels)
        target = eps if self.prediction == "epsilon" else eps - x0
        loss = ((self.net(alpha * x0 + sigma * eps, self.timesteps[t] / n, labels) - target) ** 2).mean()
        self.log("train/loss", loss, on_step=True, prog_bar=False)
        return loss

    @torch.no_grad()
    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        # warm-up of the decay so that short snapshots are not dominated by the random initialisation
        step = self.global_step
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        for p_ema, p in zip(self.ema.parameters(), self.net.parameters()):
            p_ema.lerp_(p, 1 - decay)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        if self.lr_decay_steps is None:
            return optimizer
        horizon = self.lr_decay_steps
        cosine = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, horizon) / horizon)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


class SnapshotWriter(L.Callback):
    """Saves the EMA net under `spec | {steps: k}` when the global step reaches each k, with the training loss, the
    wall and CPU (process) seconds since training started and the torch thread count in its info."""

    def __init__(self, base_spec: dict, steps: Sequence[int], directory: Path, prefix: str) -> None:
        self.base_spec, self.steps, self.directory, self.prefix = base_spec, set(steps), directory, prefix
        self.written: dict[int, Path] = {}
        self.start = (time.perf_counter(), time.process_time())

    def on_train_start(self, trainer: L.Trainer, module: DiffusionModule) -> None:
        self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: L.Trainer, module: DiffusionModule, *args: object) -> None:
        step = trainer.global_step
        if step in self.steps and step not in self.written:
            info = {"final_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
                    "train_time_s": time.perf_counter() - self.start[0],
                    "train_cpu_s": time.process_time() - self.start[1], "train_threads": torch.get_num_threads()}
            self.written[step] = save_checkpoint(self.directory, self.prefix, {**self.base_spec, "steps": step},
                                                 module.ema, info)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op threads, then restore. These nets are tiny: extra threads buy nothing, and on a busy
    2-core machine oversubscribed spinning threads made a forward pass 20× slower (measured 0.6 s vs 0.03 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                 "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)


def train_snapshots(base_spec: dict, data: tuple[torch.Tensor, torch.Tensor], steps: Sequence[int],
                    directory: Path, prefix: str, logger: object = None) -> dict[int, Path]:
    """Train one net of `base_spec` on (x, labels) for max(steps) steps, saving EMA snapshots at every k in steps."""
    quiet_lightning()
    L.seed_everything(base_spec["seed"], workers=False, verbose=False)
    net = build_unet(base_spec)
    module = DiffusionModule(net, TrainingLevels.of(base_spec["schedule"]), base_spec["lr"],
                             base_spec["cond_dropout"], base_spec["ema_decay"], base_spec.get("lr_decay_steps"))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=base_spec["batch_size"],
                                         shuffle=True, drop_last=len(data[0]) > base_spec["batch_size"],
                                         generator=torch.Generator().manual_seed(base_spec["seed"]))
    writer = SnapshotWriter(base_spec, steps, directory, prefix)
    trainer = L.Trainer(max_steps=max(steps), accelerator="cpu", devices=1, logger=logger or False,
                        log_every_n_steps=25, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True, callbacks=[writer])
    trainer.fit(module, loader)
    return writer.written
