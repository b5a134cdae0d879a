# The Lightning training module of toy.trained's ε-MLPs, apart so that only training imports Lightning.
from __future__ import annotations

import lightning as L
import torch

from toy.trained import EpsMLP


class EpsMLPModule(L.LightningModule):
    """Standard ε-matching loss over uniformly drawn training timesteps of the VP schedule."""

    def __init__(self, net: EpsMLP, alphas_cumprod: torch.Tensor, lr: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.lr = lr
        self.losses: list[float] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x0,) = batch
        n = self.alphas_cumprod.shape[0]
        t = torch.randint(0, n, (x0.shape[0],), device=x0.device)
        a = self.alphas_cumprod[t][:, None]
        eps = torch.randn_like(x0)
        loss = ((self.net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t / n) - eps) ** 2).mean()
        self.losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self) -> dict:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr)
        steps = max(1, self.trainer.max_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
                                                   "interval": "step"}}
