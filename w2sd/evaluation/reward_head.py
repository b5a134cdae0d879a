# The 768→1024→128→64→16→1 MLP head shared by the LAION aesthetic predictor and ImageReward.
from __future__ import annotations

import torch
from torch import nn


class RewardMLP(nn.Sequential):
    """Parameter names `layers.{0,2,4,6,7}` match both released checkpoints (dropouts sit at 1, 3, 5)."""

    def __init__(self, in_features: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> RewardMLP:
        head = cls(state["layers.0.weight"].shape[1])
        head.load_state_dict(state)
        return head.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(-1)
