# Measurements through the trained digit classifier: predicted classes and the Fréchet distance in its features.
"""The Fréchet distance is torchmetrics' FrechetInceptionDistance with our classifier's 64-d penultimate layer as the
`feature` module (so it is an FID whose Inception network is replaced by a digits classifier; values are not
comparable to Inception FIDs). Generated images are clamped to the data range before being measured."""
from __future__ import annotations

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from experiments.digits.classifier import DigitClassifier, FeatureExtractor
from experiments.digits.data import to_unit_range


class Evaluator:
    def __init__(self, classifier: DigitClassifier, real_images: torch.Tensor) -> None:
        """real_images: the reference set of the Fréchet distance, [N, 1, 8, 8] in model range."""
        self.classifier = classifier.eval()
        self.fid = FrechetInceptionDistance(feature=FeatureExtractor(classifier), reset_real_features=False)
        self.fid.update(to_unit_range(real_images), real=True)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(to_unit_range(images.float())).argmax(1)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(to_unit_range(images.float()))

    def frechet_distance(self, images: torch.Tensor) -> float:
        self.fid.reset()
        self.fid.update(to_unit_range(images.float()), real=False)
        return float(self.fid.compute())
