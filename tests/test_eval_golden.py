# Our scorers against golden values of the ORIGINAL implementations (tests/fixtures/scorers/make_fixtures.py).
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from w2sd.evaluation.aesthetic import AestheticScorer
from w2sd.evaluation.clip_score import CLIPScoreScorer
from w2sd.evaluation.hps import HPSv2Scorer
from w2sd.evaluation.image_reward import ImageRewardScorer
from w2sd.evaluation.pickscore import PickScoreScorer
from w2sd.evaluation.preprocess import hps_pixels, openai_clip_pixels

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "scorers"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
IMAGES = [Image.open(FIXTURES / "images" / f"{k}.png").convert("RGB") for k in range(3)]
# (64, 64), (41, 95), (127, 40): square, tall, wide; crop offsets k + 0.5 with k odd and odd pads on both axes.
PAIRS = [(IMAGES[i], EXPECTED["prompts"][j]) for i, j in EXPECTED["pairs"]]


def score_pairs(scorer) -> np.ndarray:
    return scorer.score([im for im, _ in PAIRS], [p for _, p in PAIRS])


def test_fixture_covers_square_and_non_square_images_and_a_prompt_past_77_tokens():
    assert sorted({im.size[0] == im.size[1] for im in IMAGES}) == [False, True]
    tokenizer = AutoTokenizer.from_pretrained(FIXTURES / "clip")
    assert [len(tokenizer(p)["input_ids"]) > 77 for p in EXPECTED["prompts"]] == [False, True]  # truncation matters


@pytest.mark.parametrize("version", ["v2.0", "v2.1"])
def test_hps_matches_hpsv2_on_square_and_non_square_images(version):
    scorer = HPSv2Scorer(version=version, checkpoint=str(FIXTURES / "hps" / "HPS_tiny.pt"),
                         base=str(FIXTURES / "hps" / "base"), device="cpu", batch_size=4)
    np.testing.assert_allclose(score_pairs(scorer), EXPECTED["hps"], rtol=0, atol=1e-4)
    assert scorer.name == {"v2.0": "hps_v20", "v2.1": "hps_v21"}[version]


def test_pickscore_matches_the_model_card_recipe():
    scorer = PickScoreScorer(model=str(FIXTURES / "clip"), processor=str(FIXTURES / "clip"), device="cpu")
    np.testing.assert_allclose(score_pairs(scorer), EXPECTED["pickscore"], rtol=0, atol=1e-4)


def test_clip_score_matches_torchmetrics_functional_clip_score():
    scorer = CLIPScoreScorer(model=str(FIXTURES / "clip"), device="cpu")
    np.testing.assert_allclose(score_pairs(scorer), EXPECTED["clip_score"], rtol=0, atol=1e-4)


def test_aesthetic_matches_improved_aesthetic_predictor_simple_inference():
    scorer = AestheticScorer(clip=str(FIXTURES / "clip"), head=str(FIXTURES / "aesthetic_head.pth"), device="cpu")
    np.testing.assert_allclose(scorer.score(IMAGES, ["ignored"] * 3), EXPECTED["aesthetic"], rtol=0, atol=1e-5)


def test_openai_clip_transform_pixels_match_torchvision_on_non_square_images():
    """OpenAI CLIP's `_transform`, which ImageReward reuses: shortest-side bicubic resize + round-half-even crop."""
    pixels = openai_clip_pixels(IMAGES, 224).double().numpy()
    probe = np.sin(0.01 * np.arange(pixels[0].size))
    np.testing.assert_allclose(pixels.reshape(3, -1).sum(1), EXPECTED["openai_pixel_sums"], rtol=1e-6)
    np.testing.assert_allclose(pixels.reshape(3, -1) @ probe, EXPECTED["openai_pixel_probes"], rtol=0, atol=1e-3)


def test_preprocessing_reads_a_greyscale_image_as_rgb():
    """Called directly (not only through Scorer.score, which converts first), greyscale is three equal channels."""
    grey = IMAGES[1].convert("L")
    for transform in (openai_clip_pixels, hps_pixels):
        torch.testing.assert_close(transform([grey], 224), transform([grey.convert("RGB")], 224), rtol=0, atol=0)


IMAGE_REWARD = FIXTURES / "image_reward"


def image_reward_scorer(med_config: dict | None, tmp_path: Path | None = None) -> ImageRewardScorer:
    """The golden ImageReward fixture, with its own med_config (None) or the given one written to tmp_path."""
    med_path = IMAGE_REWARD / "med_config.json"
    if med_config is not None:
        med_path = tmp_path / "med.json"
        med_path.write_text(json.dumps(med_config))
    return ImageRewardScorer(checkpoint=str(IMAGE_REWARD / "ImageReward.pt"), med_config=str(med_path),
                             tokenizer=str(IMAGE_REWARD / "bert"), vision=EXPECTED["image_reward_vision"],
                             device="cpu")


def test_image_reward_matches_the_original_score_method():
    np.testing.assert_allclose(score_pairs(image_reward_scorer(None)), EXPECTED["image_reward"], rtol=0, atol=1e-4)


def test_image_reward_med_config_defaults_are_berts(tmp_path):
    """BLIP's med_config may omit layer_norm_eps / hidden_act: BERT's defaults (1e-12, gelu) apply, as in BertConfig."""
    med = json.loads((IMAGE_REWARD / "med_config.json").read_text())
    assert (med.pop("layer_norm_eps"), med.pop("hidden_act")) == (1e-12, "gelu")
    scorer = image_reward_scorer(med, tmp_path)
    np.testing.assert_allclose(score_pairs(scorer), EXPECTED["image_reward"], rtol=0, atol=1e-4)


def test_image_reward_reads_layer_norm_eps_and_hidden_act_from_med_config(tmp_path):
    """A med_config that sets them is obeyed: each changed value alone moves every score off the golden ones."""
    med = json.loads((IMAGE_REWARD / "med_config.json").read_text())
    for change in ({"layer_norm_eps": 0.5}, {"hidden_act": "relu"}):
        scorer = image_reward_scorer({**med, **change}, tmp_path)
        assert np.all(np.abs(score_pairs(scorer) - np.asarray(EXPECTED["image_reward"])) > 1e-3), change


def test_clip_t_is_clip_score_under_its_own_name_with_a_separate_processor():
    scorer = CLIPScoreScorer(model=str(FIXTURES / "clip"), processor=str(FIXTURES / "hps" / "base"), name="clip_t",
                             device="cpu")
    assert scorer.name == "clip_t"
    # The HPS base processor has the same tokenizer and pixel settings: same scores through a different folder.
    np.testing.assert_allclose(score_pairs(scorer), EXPECTED["clip_score"], rtol=0, atol=1e-4)
