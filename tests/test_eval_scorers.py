# Every scorer loaded through its real loading path from tiny random checkpoints saved in the released formats.
from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_tiny_models import (
    BLIP_VISION,
    TinyFeatures,
    pattern_image,
    tiny_clip,
    tiny_dino,
    tiny_head,
    tiny_hps,
    tiny_image_reward,
)
from transformers import CLIPModel

from w2sd.evaluation.aesthetic import AestheticScorer
from w2sd.evaluation.checkpoints import MissingCheckpoint
from w2sd.evaluation.clip_backbone import image_embeddings, text_embeddings
from w2sd.evaluation.clip_score import CLIPScoreScorer
from w2sd.evaluation.distribution import fid, inception_score
from w2sd.evaluation.hps import HPSv2Scorer
from w2sd.evaluation.image_reward import REWARD_STD, ImageRewardScorer
from w2sd.evaluation.pickscore import PickScoreScorer
from w2sd.evaluation.similarity import ReferenceSimilarity

IMAGES = [pattern_image(i) for i in range(3)]
PROMPTS = ["a red cat", "a blue dog", "the sea"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_models")
    base, hps = tiny_hps(root / "hps")
    return {"clip": tiny_clip(root / "clip"), "hps_base": base, "hps": hps, "root": root,
            "head": tiny_head(root / "head.pth", 16), "image_reward": tiny_image_reward(root / "ir"),
            "dino": tiny_dino(root / "dino")}


def check_scores(scorer, n=3):
    first = scorer.score(IMAGES[:n], PROMPTS[:n])
    again = scorer.score(IMAGES[:n], PROMPTS[:n])
    assert first.shape == (n,) and np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, again)  # deterministic
    return first


def test_hps_checkpoint_renaming_reproduces_the_clip_cosine(models):
    scorer = HPSv2Scorer(version="v2.0", checkpoint=str(models["hps"]), base=str(models["hps_base"]), device="cpu",
                         batch_size=2)
    scores = check_scores(scorer)
    reference = CLIPModel.from_pretrained(models["hps_base"]).eval()  # the weights the checkpoint was made from
    with torch.no_grad():
        cos = (image_embeddings(reference, scorer.processor, IMAGES, torch.device("cpu"))
               * text_embeddings(reference, scorer.processor, PROMPTS, torch.device("cpu"))).sum(-1)
    np.testing.assert_allclose(scores, 100 * cos.numpy(), rtol=1e-5, atol=1e-4)
    assert scorer.name == "hps_v20" and np.all(np.abs(scores) <= 100)


def test_hps_version_switch_picks_the_released_file_names(models):
    with pytest.raises(MissingCheckpoint, match="HPS_v2.1_compressed.pt"):
        HPSv2Scorer(version="v2.1", base=str(models["hps_base"]), device="cpu")
    with pytest.raises(MissingCheckpoint, match="HPS_v2_compressed.pt"):
        HPSv2Scorer(version="v2.0", base=str(models["hps_base"]), device="cpu")
    with pytest.raises(Exception, match="v3"):
        HPSv2Scorer(version="v3", checkpoint=str(models["hps"]), base=str(models["hps_base"]), device="cpu")


def test_pickscore_is_logit_scale_times_cosine_and_prefers_the_matching_prompt(models):
    scorer = PickScoreScorer(model=str(models["clip"]), processor=str(models["clip"]), device="cpu")
    scores = check_scores(scorer)
    with torch.no_grad():
        scorer.model.logit_scale.add_(np.log(2.0))  # doubling exp(logit_scale) doubles every score
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS), 2 * scores, rtol=1e-5)
    # The same image scored against the text it is most similar to must come out on top.
    candidates = ["a red cat", "zzz", "0123 !!"]
    per_text = [scorer.score([IMAGES[0]], [t])[0] for t in candidates]
    with torch.no_grad():
        sims = (text_embeddings(scorer.model, scorer.processor, candidates, scorer.device)
                @ image_embeddings(scorer.model, scorer.processor, IMAGES[:1], scorer.device).T).squeeze(1)
    assert int(np.argmax(per_text)) == int(torch.argmax(sims))


def test_aesthetic_head_sees_l2_normalised_embeddings(models):
    scorer = AestheticScorer(clip=str(models["clip"]), head=str(models["head"]), device="cpu")
    scores = check_scores(scorer)
    assert [m.out_features for m in scorer.head.layers if isinstance(m, torch.nn.Linear)] == [1024, 128, 64, 16, 1]
    with torch.no_grad():
        scorer.model.visual_projection.weight.mul_(7.0)  # embedding norm changes, its direction does not
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS), scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scorer.score(IMAGES, ["x", "y", "z"]), scores, rtol=1e-5, atol=1e-6)  # no prompt


def test_aesthetic_rejects_a_head_of_the_wrong_width(models, tmp_path):
    with pytest.raises(MissingCheckpoint, match="768|32-d|16-d"):
        AestheticScorer(clip=str(models["clip"]), head=str(tiny_head(tmp_path / "h.pth", 32)), device="cpu")


def test_image_reward_loads_the_original_blip_names_and_standardises(models):
    scorer = ImageRewardScorer(**models["image_reward"], vision=BLIP_VISION, device="cpu")
    scores = check_scores(scorer)
    with torch.no_grad():
        scorer.head.layers[7].bias.add_(0.5)
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS), scores + 0.5 / REWARD_STD, rtol=1e-5, atol=1e-6)


def test_image_reward_refuses_a_checkpoint_that_does_not_fit(models, tmp_path):
    state = torch.load(models["image_reward"]["checkpoint"], weights_only=True)
    state.pop("blip.visual_encoder.cls_token")
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(MissingCheckpoint, match="BLIP ViT"):
        ImageRewardScorer(**{**models["image_reward"], "checkpoint": str(tmp_path / "broken.pt")},
                          vision=BLIP_VISION, device="cpu")


def test_clip_score_matches_clamped_100_cosine(models):
    scorer = CLIPScoreScorer(model=str(models["clip"]), device="cpu")
    scores = check_scores(scorer)
    clip = CLIPModel.from_pretrained(models["clip"]).eval()
    proc = scorer.metric.processor
    with torch.no_grad():
        cos = (image_embeddings(clip, proc, IMAGES, torch.device("cpu"))
               * text_embeddings(clip, proc, PROMPTS, torch.device("cpu"))).sum(-1)
    np.testing.assert_allclose(scores, np.maximum(100 * cos.numpy(), 0), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backbone", ["clip", "dino"])
def test_reference_similarity_ranks_the_reference_itself_first(models, tmp_path, backbone):
    IMAGES[0].save(tmp_path / "ref.png")
    scorer = ReferenceSimilarity(str(tmp_path), str(models[backbone]), backbone, device="cpu")
    scores = check_scores(scorer)
    assert scores[0] == pytest.approx(100.0, abs=1e-3) and scores[0] > max(scores[1:])


def test_missing_checkpoints_fail_with_one_line_naming_them(tmp_path):
    for make, name in [(lambda: PickScoreScorer(device="cpu"), "yuvalkirstain/PickScore_v1"),
                       (lambda: AestheticScorer(clip=str(tmp_path / "none"), device="cpu"), "none"),
                       (lambda: ImageRewardScorer(device="cpu"), "THUDM/ImageReward ImageReward.pt")]:
        with pytest.raises(MissingCheckpoint) as err:
            make()
        assert name in str(err.value) and "\n" not in str(err.value)


def test_fid_with_an_injected_extractor_separates_near_and_far_sets():
    rng = np.random.default_rng(0)

    def images(shift, n=16):
        from PIL import Image
        return [Image.fromarray(np.clip(rng.normal(128 + shift, 30, (8, 8, 3)), 0, 255).astype(np.uint8))
                for _ in range(n)]

    reference = images(0)
    near, far = fid(images(0), reference, feature=TinyFeatures()), fid(images(60), reference, feature=TinyFeatures())
    assert 0 <= near < far


def test_inception_score_with_injected_logits_is_high_for_confident_diverse_classes():
    from PIL import Image

    class Colour(torch.nn.Module):
        def forward(self, x):
            return 50.0 * (x.float().mean(dim=(2, 3)) / 255)  # 3 "classes": the dominant channel

    pure = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)] * 4]
    grey = [Image.new("RGB", (8, 8), (128, 128, 128))] * 12
    assert inception_score(pure, Colour(), splits=2)[0] > 2.5 > 1.01 > inception_score(grey, Colour(), splits=2)[0]
