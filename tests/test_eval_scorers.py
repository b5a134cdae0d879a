# Every scorer loaded through its real loading path from tiny random checkpoints saved in the released formats.
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_tiny_models import (
    BLIP_VISION,
    RunsCode,
    TinyFeatures,
    pattern_image,
    save_as_from_gpu,
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
from w2sd.validation import ConfigError

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


def test_hps_version_switch_picks_the_released_file_names(models):
    with pytest.raises(MissingCheckpoint, match="HPS_v2.1_compressed.pt"):
        HPSv2Scorer(version="v2.1", base=str(models["hps_base"]), device="cpu")
    with pytest.raises(MissingCheckpoint, match="HPS_v2_compressed.pt"):
        HPSv2Scorer(version="v2.0", base=str(models["hps_base"]), device="cpu")
    with pytest.raises(ConfigError, match=r"^scorer.version='v3' is not one of \['v2.0', 'v2.1'\]$"):
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
    for cut, expected in [
        ("blip.visual_encoder.cls_token", "the BLIP ViT (missing ['embeddings.class_embedding'], unexpected [])"),
        ("blip.text_encoder.encoder.layer.1.output.dense.bias",
         "the BLIP text encoder (missing ['encoder.layer.1.output.dense.bias'], unexpected [])")]:
        state = torch.load(models["image_reward"]["checkpoint"], weights_only=True)
        state.pop(cut)
        torch.save(state, tmp_path / "broken.pt")
        with pytest.raises(MissingCheckpoint) as err:
            ImageRewardScorer(**{**models["image_reward"], "checkpoint": str(tmp_path / "broken.pt")},
                              vision=BLIP_VISION, device="cpu")
        assert str(err.value) == f"image_reward: {tmp_path / 'broken.pt'} does not fit {expected}"


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


def test_missing_checkpoints_fail_with_one_line_naming_them(tmp_path, models):
    golden = Path(__file__).resolve().parent / "fixtures" / "scorers"
    cases = [
        (lambda: PickScoreScorer(device="cpu"), "pickscore: checkpoint yuvalkirstain/PickScore_v1 not found", "model"),
        (lambda: AestheticScorer(clip=str(tmp_path / "none"), device="cpu"), f"aesthetic: checkpoint {tmp_path}/none",
         "clip"),
        (lambda: AestheticScorer(clip=str(golden / "clip"), device="cpu"),
         "aesthetic: checkpoint trl-lib/ddpo-aesthetic-predictor aesthetic-model.pth not found", "head"),
        (lambda: ImageRewardScorer(device="cpu"), "image_reward: checkpoint THUDM/ImageReward ImageReward.pt",
         "checkpoint"),
        (lambda: HPSv2Scorer(base=str(models["hps_base"]), device="cpu"),  # default version: v2.1
         "hps_v21: checkpoint xswu/HPSv2 HPS_v2.1_compressed.pt not found", "checkpoint"),
        (lambda: HPSv2Scorer(checkpoint=str(models["hps"]), base=str(tmp_path / "nobase"), device="cpu"),
         f"hps_v21: checkpoint {tmp_path}/nobase not found", "base"),
    ]
    for make, start, key in cases:
        with pytest.raises(MissingCheckpoint) as err:
            make()
        message = str(err.value)
        assert message.startswith(start) and f"set the scorer's `{key}` to a local path" in message, message
        assert "\n" not in message


def test_hps_reads_bare_and_wrapped_state_dicts_and_refuses_incomplete_ones(models, tmp_path):
    wrapped = torch.load(models["hps"], weights_only=True)
    torch.save(wrapped["state_dict"], tmp_path / "bare.pt")
    kwargs = {"base": str(models["hps_base"]), "device": "cpu", "version": "v2.0"}
    bare = HPSv2Scorer(checkpoint=str(tmp_path / "bare.pt"), **kwargs)
    np.testing.assert_array_equal(bare.score(IMAGES, PROMPTS),
                                  HPSv2Scorer(checkpoint=str(models["hps"]), **kwargs).score(IMAGES, PROMPTS))
    assert bare.version == "v2.0"
    cut = "module.transformer.resblocks.1.mlp.c_fc.bias"  # a text-tower weight
    torch.save({k: v for k, v in wrapped["state_dict"].items() if k != cut}, tmp_path / "cut.pt")
    with pytest.raises(MissingCheckpoint, match=r"lacks 1 weights, e.g. text_model.encoder.layers.1.mlp.fc1.bias"):
        HPSv2Scorer(checkpoint=str(tmp_path / "cut.pt"), **kwargs)
    torch.save({"state_dict": {"visual.proj": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(MissingCheckpoint, match=r"other.pt is not an open_clip CLIP checkpoint \(no 'visual.conv1"):
        HPSv2Scorer(checkpoint=str(tmp_path / "other.pt"), **kwargs)


def test_pickscore_takes_its_processor_from_the_processor_folder(models, tmp_path):
    """The PickScore checkpoint ships without a processor (the model card loads laion's): only `processor` has one."""
    import shutil

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(models["clip"] / name, weights / name)
    with pytest.raises(MissingCheckpoint, match=f"pickscore: checkpoint {tmp_path}/noproc not found.*`processor`"):
        PickScoreScorer(model=str(weights), processor=str(tmp_path / "noproc"), device="cpu")
    scorer = PickScoreScorer(model=str(weights), processor=str(models["clip"]), device="cpu")
    reference = PickScoreScorer(model=str(models["clip"]), processor=str(models["clip"]), device="cpu")
    np.testing.assert_array_equal(scorer.score(IMAGES, PROMPTS), reference.score(IMAGES, PROMPTS))


def test_fid_equals_the_closed_form_frechet_distance_of_the_feature_statistics():
    """FID = |μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) of the two sets' features (sample mean, unbiased covariance),
    computed here with scipy's sqrtm on features computed in numpy."""
    from PIL import Image
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)

    def images(shift, spread, n=40):
        return [Image.fromarray(np.clip(rng.normal(128 + shift, spread, (4, 4, 3)), 0, 255).astype(np.uint8))
                for _ in range(n)]

    def features(ims):
        m = np.stack([np.asarray(im, dtype=np.float64).mean(axis=(0, 1)) / 255 for im in ims])
        return np.concatenate([m, m**2], axis=1)

    reference, generated = images(0, 40), images(30, 20)
    f1, f2 = features(reference), features(generated)
    mu1, mu2, s1, s2 = f1.mean(0), f2.mean(0), np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert fid(generated, reference, feature=TinyFeatures(), batch_size=7) == pytest.approx(expected, rel=1e-4)
    assert fid(reference, reference, feature=TinyFeatures()) == pytest.approx(0.0, abs=1e-6)


def inception_score_formula(logits: np.ndarray) -> float:
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return float(np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), axis=1))))


class FixedLogits(torch.nn.Module):
    """Logits read off the image: the red channel of pixel (0, 0) indexes a row of a fixed logit table."""

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self.table = torch.tensor(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0, 0, 0].long()]


def test_inception_score_equals_the_formula_on_known_logits_and_is_seeded():
    from PIL import Image

    table = np.random.default_rng(3).normal(0, 2, (12, 5))
    images = [Image.new("RGB", (2, 2), (k, 0, 0)) for k in range(12)]
    mean, std = inception_score(images, FixedLogits(table), splits=1, batch_size=5)
    assert mean == pytest.approx(inception_score_formula(table), rel=1e-9) and std == 0.0
    # splits=3: the seeded shuffle (torch.randperm under manual_seed) decides the groups; mean/std over groups.
    order = torch.randperm(12, generator=torch.Generator().manual_seed(7)).numpy()
    per_split = [inception_score_formula(table[order[i:i + 4]]) for i in (0, 4, 8)]
    mean, std = inception_score(images, FixedLogits(table), splits=3, seed=7)
    assert mean == pytest.approx(np.mean(per_split), rel=1e-9) and std == pytest.approx(np.std(per_split, ddof=1))
    assert inception_score(images, FixedLogits(table), splits=3, seed=7) == (mean, std)
    assert inception_score(images, FixedLogits(table), splits=3, seed=8) != (mean, std)


def test_inception_score_of_confident_uniform_classes_is_the_class_count():
    from PIL import Image

    pure = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)] * 4]
    grey = [Image.new("RGB", (8, 8), (128, 128, 128))] * 12
    assert inception_score(pure, TinyFeatures().logits, splits=1)[0] == pytest.approx(3.0, rel=1e-6)
    assert inception_score(grey, TinyFeatures().logits, splits=1)[0] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), (" YES ", True), ("On", True), ("0", False),
                                            ("", False), ("false", False)])
def test_hf_hub_offline_values_are_read_like_huggingface_hub(monkeypatch, value, offline):
    from w2sd.evaluation.checkpoints import hub_offline, resolve_file

    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is offline
    if offline:  # the refusal says why nothing was fetched
        with pytest.raises(MissingCheckpoint) as err:
            resolve_file(None, "nobody/none", "w.pt", scorer="s", key="checkpoint")
        assert str(err.value) == ("s: checkpoint nobody/none w.pt not found locally or in the Hugging Face cache "
                                  "(HF_HUB_OFFLINE=1); download it where the hub is reachable (`hf download "
                                  "nobody/none w.pt`) or set the scorer's `checkpoint` to a local path")


def test_hf_hub_offline_unset_is_online(monkeypatch):
    from w2sd.evaluation.checkpoints import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub_offline() is False


def test_fid_resizes_mixed_sizes_when_asked_and_needs_two_images_per_set():
    from PIL import Image

    rng = np.random.default_rng(4)
    mixed = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(6, 9), (8, 8), (5, 7)]]
    ref = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(4)]
    resized = [im.resize((8, 8), Image.Resampling.BICUBIC) for im in mixed]
    assert fid(mixed, ref, feature=TinyFeatures(), image_size=8) == fid(resized, ref, feature=TinyFeatures())
    with pytest.raises(ConfigError, match="differ in size"):
        fid(mixed, ref, feature=TinyFeatures())
    with pytest.raises(ConfigError, match=r"^FID needs >= 2 images per set, got 1 generated, 4 reference$"):
        fid(ref[:1], ref, feature=TinyFeatures())
    with pytest.raises(ConfigError, match=r"got 4 generated, 1 reference$"):
        fid(ref, ref[:1], feature=TinyFeatures())
    assert fid(ref[:2], ref[2:], feature=TinyFeatures()) >= 0  # two per set suffice
    assert fid(ref, mixed, feature=TinyFeatures(), image_size=8) == fid(ref, resized, feature=TinyFeatures())
    # Greyscale files enter the RGB network as three equal channels, resized or not.
    grey = [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L") for _ in range(3)]
    rgb = [g.convert("RGB") for g in grey]
    for size in (None, 8):
        assert fid(grey, ref, feature=TinyFeatures(), image_size=size) == fid(rgb, ref, feature=TinyFeatures())


def test_dino_similarity_is_100_times_the_mean_cls_cosine_to_rgb_references(models, tmp_path):
    """DreamBooth's DINO metric on the CLS token (position 0 of the last hidden state), computed here with
    transformers' ViT directly; references are stored greyscale and read as RGB."""
    from transformers import ViTImageProcessor, ViTModel

    refs = [IMAGES[1].convert("L"), IMAGES[2].convert("L")]
    for k, ref in enumerate(refs):
        ref.save(tmp_path / f"ref{k}.png")
    scorer = ReferenceSimilarity(str(tmp_path), str(models["dino"]), "dino", device="cpu")
    vit = ViTModel.from_pretrained(models["dino"], add_pooling_layer=False).eval()
    processor = ViTImageProcessor.from_pretrained(models["dino"])
    with torch.no_grad():
        cls = [vit(pixel_values=processor(images=[im.convert("RGB") for im in group], return_tensors="pt")
                   ["pixel_values"]).last_hidden_state[:, 0] for group in (IMAGES, refs)]
    gen, ref = (c / c.norm(dim=-1, keepdim=True) for c in cls)
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS), 100 * (gen @ ref.T).mean(1).numpy(), rtol=1e-5)
    assert scorer.name == "dino"


@pytest.mark.parametrize(("backbone", "name"), [("clip", "clip_i"), ("dino", "dino")])
def test_reference_similarity_names_its_backbone_and_its_missing_model(tmp_path, backbone, name):
    IMAGES[0].save(tmp_path / "ref.png")
    with pytest.raises(MissingCheckpoint, match=f"^{name}: checkpoint {tmp_path}/none not found.*`model`"):
        ReferenceSimilarity(str(tmp_path), str(tmp_path / "none"), backbone, device="cpu")
    with pytest.raises(ConfigError, match=r"^backbone='resnet' is not one of \['clip', 'dino'\]$"):
        ReferenceSimilarity(str(tmp_path), str(tmp_path / "none"), "resnet", device="cpu")


def test_clip_reference_similarity_is_named_clip_i(models, tmp_path):
    IMAGES[0].save(tmp_path / "ref.png")
    assert ReferenceSimilarity(str(tmp_path), str(models["clip"]), "clip").name == "clip_i"  # default device


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache in tmp_path, filled with `put(repo, *files)`, and a hub client that records every
    URL asked for (and finds nothing). huggingface_hub's own offline switch is off, as when HF_HUB_OFFLINE is set
    after the import: only the scorers' reading of the variable keeps them off the network."""
    import huggingface_hub
    from huggingface_hub import constants

    asked: list[str] = []
    http = sys.modules[type(huggingface_hub.get_session()).__module__.split(".")[0]]  # httpx or its successor

    def answer(request):
        asked.append(str(request.url))
        return http.Response(404)

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    previous = huggingface_hub.utils._http._GLOBAL_CLIENT_FACTORY
    huggingface_hub.set_client_factory(lambda: http.Client(transport=http.MockTransport(answer)))

    def put(repo: str, *files: Path) -> None:
        snapshot = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        for file in files:
            shutil.copy(file, snapshot / file.name)
        (snapshot.parent.parent / "refs").mkdir()
        (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)

    yield put, asked
    huggingface_hub.set_client_factory(previous)


def test_default_checkpoints_come_from_the_hub_cache_by_repo_and_file_without_a_request(models, hub, monkeypatch):
    """Every default is a Hub id (+ file name): with HF_HUB_OFFLINE=1 they load from the cache, asking nothing."""
    from w2sd.evaluation.aesthetic import AESTHETIC_CLIP, AESTHETIC_HEAD_FILE, AESTHETIC_HEAD_REPO
    from w2sd.evaluation.hps import HPS_BASE, HPS_FILES, HPS_REPO
    from w2sd.evaluation.image_reward import IMAGE_REWARD_REPO
    from w2sd.evaluation.pickscore import PICKSCORE_MODEL, PICKSCORE_PROCESSOR

    put, asked = hub
    clip_files = sorted(models["clip"].iterdir())
    put(AESTHETIC_CLIP, *clip_files)  # also CLIPScore's default model
    head = models["root"] / AESTHETIC_HEAD_FILE
    shutil.copy(models["head"], head)
    put(AESTHETIC_HEAD_REPO, head)
    put(IMAGE_REWARD_REPO, Path(models["image_reward"]["checkpoint"]), Path(models["image_reward"]["med_config"]))
    put("bert-base-uncased", *Path(models["image_reward"]["tokenizer"]).iterdir())
    put(PICKSCORE_MODEL, *clip_files)
    assert PICKSCORE_PROCESSOR == HPS_BASE  # one cached folder serves both
    put(HPS_BASE, *sorted(models["hps_base"].iterdir()))
    hps = models["root"] / HPS_FILES["v2.1"]
    shutil.copy(models["hps"], hps)
    put(HPS_REPO, hps)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pairs = [(AestheticScorer(), AestheticScorer(clip=str(models["clip"]), head=str(models["head"]))),
             (CLIPScoreScorer(), CLIPScoreScorer(model=str(models["clip"]))),
             (ImageRewardScorer(vision=BLIP_VISION), ImageRewardScorer(**models["image_reward"], vision=BLIP_VISION)),
             (PickScoreScorer(), PickScoreScorer(model=str(models["clip"]), processor=str(models["hps_base"]))),
             (HPSv2Scorer(), HPSv2Scorer(version="v2.1", checkpoint=str(models["hps"]), base=str(models["hps_base"])))]
    assert not [url for url in asked if "/resolve/" in url or "/api/models" in url]
    for cached, local in pairs:
        assert cached.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
        np.testing.assert_array_equal(cached.score(IMAGES, PROMPTS), local.score(IMAGES, PROMPTS))
    assert [s.name for s, _ in pairs] == ["aesthetic", "clip_score", "image_reward", "pickscore", "hps_v21"]


def test_an_unreachable_hub_is_reported_without_the_offline_remark(hub, monkeypatch):
    _, asked = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from w2sd.evaluation.checkpoints import resolve_file

    with pytest.raises(MissingCheckpoint) as err:
        resolve_file(None, "nobody/none", "w.pt", scorer="s", key="checkpoint")
    assert str(err.value) == ("s: checkpoint nobody/none w.pt not found locally or in the Hugging Face cache; "
                              "download it where the hub is reachable (`hf download nobody/none w.pt`) or set the "
                              "scorer's `checkpoint` to a local path")
    assert any("nobody/none" in url for url in asked)  # online, it did ask the hub


def scorer_makers(models, references):
    return {
        "aesthetic": lambda **kw: AestheticScorer(clip=str(models["clip"]), head=str(models["head"]), **kw),
        "clip_score": lambda **kw: CLIPScoreScorer(model=str(models["clip"]), **kw),
        "hps": lambda **kw: HPSv2Scorer(version="v2.0", checkpoint=str(models["hps"]), base=str(models["hps_base"]),
                                        **kw),
        "image_reward": lambda **kw: ImageRewardScorer(**models["image_reward"], vision=BLIP_VISION, **kw),
        "pickscore": lambda **kw: PickScoreScorer(model=str(models["clip"]), processor=str(models["clip"]), **kw),
        "clip_i": lambda **kw: ReferenceSimilarity(str(references), str(models["clip"]), "clip", **kw),
        "dino": lambda **kw: ReferenceSimilarity(str(references), str(models["dino"]), "dino", **kw),
    }


@pytest.mark.parametrize("name", ["aesthetic", "clip_score", "hps", "image_reward", "pickscore", "clip_i", "dino"])
def test_scorers_put_their_networks_and_inputs_on_the_given_device(models, tmp_path, name):
    """PyTorch's "meta" device stands in for a GPU: any weight or input left on the CPU shows, and any mix of the two
    fails. Text towers call .item() (no data on meta), so only image-only scorers are also run end to end."""
    IMAGES[0].save(tmp_path / "ref.png")
    scorer = scorer_makers(models, tmp_path)[name](device="meta")
    assert scorer.device == torch.device("meta")
    modules = [m for m in vars(scorer).values() if isinstance(m, torch.nn.Module)]
    assert modules or name in ("clip_i", "dino")
    assert all(p.device.type == "meta" for m in modules for p in m.parameters())
    if name in ("aesthetic", "clip_i", "dino"):
        out = scorer.score_batch(IMAGES[:2], PROMPTS[:2])
        assert out.device.type == "meta" and out.shape == (2,)
    if name in ("clip_i", "dino"):
        assert scorer.reference_embeddings.device.type == "meta"


def test_checkpoints_saved_from_gpu_load_on_any_machine(models, tmp_path):
    """The released head, ImageReward.pt and HPS checkpoints hold CUDA-tagged storages (saved from GPU training)."""
    head = save_as_from_gpu(torch.load(models["head"], weights_only=True), tmp_path / "head.pth")
    ir = save_as_from_gpu(torch.load(models["image_reward"]["checkpoint"], weights_only=True), tmp_path / "ir.pt")
    hps = save_as_from_gpu(torch.load(models["hps"], weights_only=True), tmp_path / "hps.pt")
    kw = {"device": "cpu"}
    pairs = [(AestheticScorer(clip=str(models["clip"]), head=str(head), **kw),
              AestheticScorer(clip=str(models["clip"]), head=str(models["head"]), **kw)),
             (ImageRewardScorer(**{**models["image_reward"], "checkpoint": str(ir)}, vision=BLIP_VISION, **kw),
              ImageRewardScorer(**models["image_reward"], vision=BLIP_VISION, **kw)),
             (HPSv2Scorer(version="v2.0", checkpoint=str(hps), base=str(models["hps_base"]), **kw),
              HPSv2Scorer(version="v2.0", checkpoint=str(models["hps"]), base=str(models["hps_base"]), **kw))]
    for gpu_saved, cpu_saved in pairs:
        np.testing.assert_array_equal(gpu_saved.score(IMAGES, PROMPTS), cpu_saved.score(IMAGES, PROMPTS))


@pytest.mark.parametrize("name", ["aesthetic", "image_reward", "hps"])
def test_loading_a_checkpoint_never_runs_code_from_it(models, tmp_path, name):
    import pickle

    marker = tmp_path / "code-ran"
    torch.save({"weights": RunsCode(marker)}, tmp_path / "evil.pt")
    evil = str(tmp_path / "evil.pt")
    make = {"aesthetic": lambda: AestheticScorer(clip=str(models["clip"]), head=evil, device="cpu"),
            "image_reward": lambda: ImageRewardScorer(**{**models["image_reward"], "checkpoint": evil},
                                                      vision=BLIP_VISION, device="cpu"),
            "hps": lambda: HPSv2Scorer(checkpoint=evil, base=str(models["hps_base"]), device="cpu")}[name]
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        make()
    assert not marker.exists()


def test_missing_parts_of_a_checkpoint_name_the_setting_to_fix(models, tmp_path):
    """Each file or folder a scorer reads has its own setting; the one-line refusal names that one."""
    import shutil

    weights_only = tmp_path / "weights"  # a model folder without the processor/tokenizer files
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(models["clip"] / name, weights_only / name)
    dino_weights = tmp_path / "dino"
    dino_weights.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(models["dino"] / name, dino_weights / name)
    hps_config = tmp_path / "hps_base"
    hps_config.mkdir()
    shutil.copy(models["hps_base"] / "config.json", hps_config / "config.json")
    IMAGES[0].save(tmp_path / "ref.png")
    ir = models["image_reward"]
    with pytest.raises(MissingCheckpoint, match=f"^image_reward: med_config={tmp_path}/med.json is not a file; point "
                                                "it at the downloaded med_config.json$"):
        ImageRewardScorer(checkpoint=ir["checkpoint"], med_config=str(tmp_path / "med.json"), device="cpu")
    cases = [
        (lambda: ImageRewardScorer(**{**ir, "tokenizer": str(tmp_path / "bert")}, device="cpu"),
         f"image_reward: checkpoint {tmp_path}/bert not found", "tokenizer"),
        (lambda: HPSv2Scorer(checkpoint=str(models["hps"]), base=str(hps_config), device="cpu"),
         f"hps_v21: {hps_config} is not a complete checkpoint folder (", "base"),
        (lambda: AestheticScorer(clip=str(weights_only), device="cpu"),  # no `processor` setting: the model's folder
         f"aesthetic: {weights_only} is not a complete checkpoint folder (", "clip"),
        (lambda: ReferenceSimilarity(str(tmp_path), str(dino_weights), "dino", device="cpu"),
         f"dino: {dino_weights} is not a complete checkpoint folder (", "model"),
        (lambda: CLIPScoreScorer(model=str(tmp_path / "none"), name="clip_t", device="cpu"),
         f"clip_t: checkpoint {tmp_path}/none not found", "model"),
    ]
    for make, start, key in cases:
        with pytest.raises(MissingCheckpoint) as err:
            make()
        message = str(err.value)
        assert message.startswith(start) and "\n" not in message, message
        assert message.endswith(f"set the scorer's `{key}` to a local path") or message.endswith(
            f"set the scorer's `{key}` to a folder saved with save_pretrained"), message


def test_image_reward_tokenizer_has_blips_two_added_tokens(models):
    """BLIP's init_tokenizer adds bos "[DEC]" then "[ENC]" after BERT's vocabulary (why med_config has 30524 =
    30522 + 2 entries); a prompt containing them must tokenise them whole, to those ids."""
    scorer = ImageRewardScorer(**models["image_reward"], vision=BLIP_VISION, device="cpu")
    vocab = json.loads(Path(models["image_reward"]["med_config"]).read_text())["vocab_size"]
    ids = scorer.tokenizer("a [DEC] b [ENC]")["input_ids"]
    assert scorer.tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "a", "[DEC]", "b", "[ENC]", "[SEP]"]
    assert (ids[2], ids[4]) == (vocab - 2, vocab - 1)


def test_load_pretrained_forwards_options_and_reports_a_broken_local_folder_in_one_line(tmp_path, monkeypatch):
    from w2sd.evaluation.checkpoints import load_pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def loader(name, **kwargs):
        calls.append((name, kwargs))
        return "loaded"

    assert load_pretrained(loader, str(tmp_path), scorer="s", key="k", backend="pil") == "loaded"
    assert load_pretrained(loader, "org/name", scorer="s", key="k", backend="pil") == "loaded"
    assert calls == [(str(tmp_path), {"backend": "pil"}), ("org/name", {"local_files_only": True, "backend": "pil"})]
    cases = [(OSError("no config.json in it\nmore detail"), "no config.json in it"), (ValueError(), "ValueError")]
    for err, reason in cases:
        def broken(name, error=err, **kwargs):
            raise error

        with pytest.raises(MissingCheckpoint) as caught:
            load_pretrained(broken, str(tmp_path), scorer="s", key="k")
        assert str(caught.value) == (f"s: {tmp_path} is not a complete checkpoint folder ({reason}); set the scorer's "
                                     "`k` to a folder saved with save_pretrained")
