# Evaluation suite: reward-model scorers, video metrics, FID/IS and pairwise preferences over generated images.
"""Every scorer maps (images, prompts) → one score per image (`Scorer.score`) and loads real weights from a local
path or the Hugging Face cache; a missing checkpoint is one `MissingCheckpoint` line naming it."""
from w2sd.evaluation.checkpoints import MissingCheckpoint
from w2sd.evaluation.preference import pairwise_preference
from w2sd.evaluation.scorer import Scorer

__all__ = ["MissingCheckpoint", "Scorer", "pairwise_preference"]
