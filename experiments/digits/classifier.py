# The evaluator: a small CNN digit classifier trained on the real training split; its penultimate layer is the
# feature space of the Fréchet distance (the role Inception plays in FID).
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from experiments.digits.checkpoints import load_checkpoint, save_checkpoint
from experiments.digits.data import NUM_CLASSES, digits_split, to_unit_range
from experiments.digits.training import quiet_lightning

PREFIX = "classifier"


class DigitClassifier(nn.Module):
    """Input: [N, 1, 8, 8] intensities in [0, 1]. `features` is the ReLU output of the penultimate layer."""

    def __init__(self, width: int = 32, num_features: int = 64) -> None:
        super().__init__()
        self.num_features = num_features  # read by torchmetrics' FrechetInceptionDistance
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * 16, num_features), nn.ReLU())
        self.head = nn.Linear(num_features, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FeatureExtractor(nn.Module):
    """The classifier's penultimate features as a torchmetrics FID `feature` module (input: unit-range images)."""

    def __init__(self, classifier: DigitClassifier) -> None:
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by −1…1 pixel (zero fill), so the evaluator tolerates off-centre generated digits."""
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2, x.shape[0]), generator=generator)
    return torch.stack([padded[k, :, dy[k]:dy[k] + 8, dx[k]:dx[k] + 8] for k in range(x.shape[0])])


class ClassifierModule(L.LightningModule):
    def __init__(self, net: DigitClassifier, lr: float, seed: int) -> None:
        super().__init__()
        self.net, self.lr = net, lr
        self.shift_gen = torch.Generator().manual_seed(seed)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(random_shift(x, self.shift_gen)), y)
        self.log("classifier/loss", loss, on_step=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


@torch.no_grad()
def accuracy(net: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((net.eval()(images).argmax(1) == labels).double().mean())


def train_classifier(spec: dict, directory: Path, logger: object = None) -> Path:
    quiet_lightning()
    L.seed_everything(spec["seed"], workers=False, verbose=False)
    train = digits_split("train", spec["test_fraction"], spec["split_seed"])
    net = DigitClassifier(spec["width"], spec["num_features"])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(to_unit_range(train.images), train.labels),
                                         batch_size=spec["batch_size"], shuffle=True,
                                         generator=torch.Generator().manual_seed(spec["seed"]))
    trainer = L.Trainer(max_steps=spec["steps"], accelerator="cpu", devices=1, logger=logger or False,
                        log_every_n_steps=25, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True)
    trainer.fit(ClassifierModule(net, spec["lr"], spec["seed"]), loader)
    test = digits_split("test", spec["test_fraction"], spec["split_seed"])
    return save_checkpoint(directory, PREFIX, spec, net,
                           {"test_accuracy": accuracy(net, to_unit_range(test.images), test.labels)})


def load_classifier(spec: dict, directory: Path) -> tuple[DigitClassifier, dict]:
    net = DigitClassifier(spec["width"], spec["num_features"])
    payload = load_checkpoint(directory, PREFIX, spec, net)
    return net.eval(), payload["info"]
