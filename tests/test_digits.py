# The miniature digits worlds: Lightning training, checkpoints keyed by config hash, evaluator, video world, errors.
import re
from pathlib import Path

import pytest
import torch

from experiments.digits import models as M
from experiments.digits.adapter import UNetEps
from experiments.digits.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from experiments.digits.classifier import load_classifier
from experiments.digits.data import (
    VELOCITIES,
    all_digits,
    class_subset,
    digits_split,
    moving_digit_clips,
    ratio_counts,
    to_unit_range,
)
from experiments.digits.training import build_unet, torch_threads, train_snapshots, training_alphas_cumprod
from experiments.digits.video_metrics import centroids, clip_metrics
from w2sd.results import config_hash
from w2sd.validation import ConfigError

SCHEDULE = {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000}


def tiny_spec(dims: int = 2, num_classes: int = 10) -> dict:
    data = {"world": "digits", "counts": [[0, 12], [7, 6]], "split": {"test_fraction": 0.2, "seed": 0}}
    return {"data": data, "net": {"dims": dims, "channels": [8, 16], "emb_dim": 16, "num_classes": num_classes},
            "schedule": SCHEDULE, "batch_size": 8, "lr": 0.001, "ema_decay": 0.999, "cond_dropout": 0.15, "seed": 0}


def test_tiny_lightning_run_writes_snapshots_that_round_trip(tmp_path: Path) -> None:
    base = tiny_spec()
    written = train_snapshots(base, M.training_tensors(base), [2, 4], tmp_path, "unet2d")
    assert sorted(written) == [2, 4]
    nets = {}
    for steps in (2, 4):
        net = build_unet({**base, "steps": steps})
        payload = load_checkpoint(tmp_path, "unet2d", {**base, "steps": steps}, net)
        assert payload["config_hash"] == config_hash({**base, "steps": steps})
        assert written[steps].name == f"unet2d-{payload['config_hash']}.pt"
        nets[steps] = net
    assert any(not torch.equal(a, b) for a, b in zip(nets[2].parameters(), nets[4].parameters()))
    # save → load is exact up to the documented float16 storage
    again = save_checkpoint(tmp_path / "copy", "unet2d", {**base, "steps": 4}, nets[4])
    reloaded = build_unet(base)
    load_checkpoint(again.parent, "unet2d", {**base, "steps": 4}, reloaded)
    assert all(torch.equal(a, b) for a, b in zip(nets[4].state_dict().values(), reloaded.state_dict().values()))
    # same config, same seed → same weights (CPU determinism of the Lightning run)
    rerun = train_snapshots(base, M.training_tensors(base), [2], tmp_path / "rerun", "unet2d")
    assert torch.load(rerun[2])["state_dict"].keys() == torch.load(written[2])["state_dict"].keys()
    assert all(torch.equal(a, b) for a, b in zip(torch.load(rerun[2])["state_dict"].values(),
                                                  torch.load(written[2])["state_dict"].values()))


def test_cosine_lr_decay_follows_its_closed_form_and_snapshots_record_their_training_time(tmp_path: Path) -> None:
    import math

    from experiments.digits.training import DiffusionModule

    module = DiffusionModule(build_unet(tiny_spec()), training_alphas_cumprod(SCHEDULE), 0.002, 0.0, 0.999,
                             lr_decay_steps=8)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    for k in range(1, 11):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001 * (1 + math.cos(math.pi * min(k, 8) / 8)))
    assert isinstance(DiffusionModule(build_unet(tiny_spec()), training_alphas_cumprod(SCHEDULE), 0.002, 0.0,
                                      0.999).configure_optimizers(), torch.optim.Adam)  # default: constant rate
    base = {**tiny_spec(), "lr_decay_steps": 4}
    with torch_threads(2):  # not torch's default here, so a fixed value in the info would show
        written = train_snapshots(base, M.training_tensors(base), [2, 4], tmp_path, "unet2d")
    info = {k: read_checkpoint(path)["info"] for k, path in written.items()}
    assert 0 < info[2]["train_time_s"] < info[4]["train_time_s"] and 0 < info[2]["train_cpu_s"] < info[4]["train_cpu_s"]
    assert info[2]["train_threads"] == info[4]["train_threads"] == 2


def test_checkpoint_with_other_config_is_a_clear_error(tmp_path: Path) -> None:
    base = {**tiny_spec(), "steps": 1}
    net = build_unet(base)
    path = save_checkpoint(tmp_path, "unet2d", base, net)
    with pytest.raises(ConfigError, match="no checkpoint for training config"):
        load_checkpoint(tmp_path, "unet2d", {**base, "lr": 0.01}, build_unet(base))
    payload = torch.load(path)
    payload["spec"]["lr"] = 0.5  # a checkpoint whose recorded config no longer matches its hash
    torch.save(payload, path)
    with pytest.raises(ConfigError, match="records config hash"):
        load_checkpoint(tmp_path, "unet2d", base, build_unet(base))


def test_committed_checkpoints_match_their_config_hash_and_stay_small() -> None:
    files = sorted(M.COMMITTED_DIR.glob("*.pt"))
    assert files, "no committed checkpoints in experiments/digits/checkpoints"
    for path in files:
        payload = read_checkpoint(path)
        assert path.stem.endswith(config_hash(payload["spec"]))
    assert sum(p.stat().st_size for p in files) <= 10 * 2**20


def test_every_study_finds_its_committed_checkpoints(compose_config) -> None:
    for name in ("digits_dataset_gap", "digits_weight_gap", "digits_condition_gap", "digits_video",
                 "digits_video_steps", "digits_frontier_dataset_gap", "digits_frontier_weight_gap", "digits_cfg_sweep"):
        cfg = compose_config([f"experiment={name}"])
        from w2sd.runner import build_experiment

        build_experiment(cfg).validate()  # raises ConfigError naming a missing checkpoint


def test_committed_classifier_reaches_97_percent_on_held_out_digits(compose_config) -> None:
    cfg = compose_config(["experiment=digits_dataset_gap"])
    net, info = load_classifier(M.classifier_spec(cfg.digits), M.COMMITTED_DIR)
    test = digits_split("test", cfg.digits.split.test_fraction, cfg.digits.split.seed)
    accuracy = float((net(to_unit_range(test.images)).argmax(1) == test.labels).double().mean())
    assert accuracy >= 0.97
    assert accuracy == pytest.approx(info["test_accuracy"], abs=1e-3)  # float16 storage moves it at most a hair


def test_video_generator_moves_each_digit_at_its_constant_velocity() -> None:
    clips = moving_digit_clips(digits_split("train"), 64, torch.Generator().manual_seed(3))
    c = centroids(clips.video)
    assert torch.allclose(c.diff(dim=1), clips.velocity[:, None, :].float().expand(-1, 7, -1), atol=1e-4)
    # the whole digit stays on the canvas: every frame carries the same ink
    ink = to_unit_range(clips.video).sum((1, 3, 4))
    assert torch.allclose(ink, ink[:, :1].expand_as(ink), rtol=1e-5)
    assert {tuple(v) for v in clips.velocity.tolist()} <= set(VELOCITIES)
    assert len({tuple(v) for v in clips.velocity.tolist()}) > 5


def test_real_clips_score_exact_motion_metrics(compose_config) -> None:
    from experiments.digits.classifier import DigitClassifier
    from experiments.digits.evaluator import Evaluator

    clips = moving_digit_clips(digits_split("test"), 40, torch.Generator().manual_seed(0))
    evaluator = Evaluator(DigitClassifier(), digits_split("test").images)
    m = clip_metrics(clips.video, evaluator)
    assert m["velocity_jitter"] == pytest.approx(0.0, abs=1e-4)
    assert m["dynamic_degree"] == pytest.approx(float(clips.velocity.float().norm(dim=1).mean()), abs=1e-4)


def test_frame_fd_of_real_clips_sits_far_below_noised_and_misaligned_clips(compose_config) -> None:
    """frame_fd compares frame crops with the same crops of real clips: held-out real clips pay only the
    finite-sample floor (≈ a second real draw of the same size), while clips with pixel noise, or with a stray
    blob that pulls every crop off the digit, score several times higher."""
    from w2sd.runner import build_experiment

    cfg = compose_config(["experiment=digits_video", "reference.clips=400"])
    experiment = build_experiment(cfg)
    experiment.setup_evaluation(load_classifier(M.classifier_spec(cfg.digits), M.COMMITTED_DIR)[0])
    frames, size = cfg.video.frames, cfg.video.size

    def frame_fd(video: torch.Tensor) -> float:
        return clip_metrics(video, experiment.evaluator)["frame_fd"]

    real = moving_digit_clips(digits_split("test"), 96, torch.Generator().manual_seed(1), frames=frames,
                              size=size).video
    other = moving_digit_clips(digits_split("test"), 96, torch.Generator().manual_seed(2), frames=frames,
                               size=size).video
    noised = (real + 0.5 * torch.randn(real.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    stray = real.clone()
    stray[..., :3, :3] = 1.0  # a full-ink 3×3 corner block drags each frame's centroid, and crop, off the digit
    assert frame_fd(real) < 1.5 * frame_fd(other)
    assert frame_fd(noised) > 2 * frame_fd(real) and frame_fd(stray) > 3 * frame_fd(real)


def test_temporal_attention_mixes_all_frames_of_one_position_and_nothing_else() -> None:
    """Swapping two frames at one pixel must change that pixel in every frame (attention over frames, which tells
    frames apart by their position embedding) and no other pixel. The swap leaves the GroupNorm statistics as they
    were, so only the attention can carry it; a reshape that mixes axes, or a lost position embedding, fails."""
    from experiments.digits.unet import TemporalAttention

    torch.manual_seed(0)
    block = TemporalAttention(8, frames=5, heads=2)
    x = torch.randn(2, 8, 5, 3, 4)
    assert torch.equal(block(x), x)  # zero output projection: the block starts as the identity
    torch.nn.init.normal_(block.attention.out_proj.weight)
    torch.nn.init.normal_(block.position)
    swapped = x.clone()
    swapped[1, :, [0, 3], 2, 1] = x[1, :, [3, 0], 2, 1]
    changed = (block(swapped) - block(x)).abs().sum(1) > 1e-5  # [B, F, H, W]
    expected = torch.zeros_like(changed)
    expected[1, :, 2, 1] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("dims", [2, 3])
def test_resblock_embedding_shifts_or_scales_and_shifts_the_normalised_features(dims: int) -> None:
    """The block's embedding enters as ADM's AdaGN, GroupNorm(h)·(1 + scale) + shift, with `scale_shift` (the clip
    net), and as a shift before the norm otherwise (the image nets, whose committed weights assume it). Expected values
    are built from torch.nn.functional here; swapped scale and shift, a missing 1 +, or the embedding applied after
    the SiLU fail."""
    from torch.nn import functional as F

    from experiments.digits.unet import ResBlock

    torch.manual_seed(0)
    shape = (2, 4, 6, 6) if dims == 2 else (2, 4, 3, 6, 6)
    x, emb = torch.randn(*shape), torch.randn(2, 5)
    for scale_shift in (False, True):
        block = ResBlock(dims, 4, 4, emb_dim=5, scale_shift=scale_shift)
        torch.nn.init.normal_(block.norm2.weight)
        torch.nn.init.normal_(block.norm2.bias)
        h = block.conv1(F.silu(F.group_norm(x, 4, block.norm1.weight, block.norm1.bias)))
        e = (emb @ block.emb.weight.T + block.emb.bias).view(2, -1, *([1] * (dims)))
        weight, bias = block.norm2.weight, block.norm2.bias
        h = (F.group_norm(h, 4, weight, bias) * (1 + e[:, :4]) + e[:, 4:] if scale_shift
             else F.group_norm(h + e, 4, weight, bias))
        expected = block.conv2(F.silu(h)) + x
        assert torch.allclose(block(x, emb), expected, atol=1e-6)


def test_cfg_adapter_matches_conditional_unconditional_and_their_combination() -> None:
    torch.manual_seed(0)
    net = build_unet(tiny_spec()).eval()
    alphas = training_alphas_cumprod(SCHEDULE)
    x, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 7, 9])

    def eps(lab, w, clip=False):
        return UNetEps(net, alphas, lab, w, clip_x0=clip)(x, 500)

    cond, uncond = eps(labels, 1.0), eps(labels, 0.0)
    assert not torch.allclose(cond, uncond)
    assert torch.allclose(eps(labels, 3.0), uncond + 3.0 * (cond - uncond), atol=1e-5)
    assert torch.allclose(eps(None, 3.0), uncond)
    # the clipped ε is the one whose x̂₀ is the clamped x̂₀
    a = float(alphas[500])
    x0 = (x - (1 - a) ** 0.5 * eps(labels, 3.0, clip=True)) / a**0.5
    raw = (x - (1 - a) ** 0.5 * eps(labels, 3.0)) / a**0.5
    assert torch.allclose(x0, raw.clamp(-1, 1), atol=1e-4) and (raw.abs() > 1).any()


@pytest.mark.parametrize("call, needle", [
    (lambda: class_subset(digits_split("train"), {10: 5}), "class=10 is not a digit class"),
    (lambda: class_subset(digits_split("train"), {3: 0}), "needs at least 1"),
    (lambda: class_subset(digits_split("train"), {}), "class counts are empty"),
    (lambda: class_subset(digits_split("train"), {3: 10_000}), "asks for 10000"),
    (lambda: ratio_counts(digits_split("train"), 0, 0, 2), "both class 0"),
])
def test_bad_class_splits_are_clear_errors(call, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        call()


@pytest.mark.parametrize("overrides, needle", [
    (["study.minority=12"], "minority=12 is not a digit class"),
    (["study.ratios.weak=1000"], "needs at least 1"),
    (["study.steps=7"], "no checkpoint unet2d-"),
    (["seeds=[]"], "seeds=[] must be a non-empty list"),
    (["experiment=digits_frontier_dataset_gap", "tune.seeds=[0]"], "must be non-empty and disjoint from seeds"),
    (["experiment=digits_frontier_dataset_gap", "tune.metric=other_fraction"], "tune.metric='other_fraction'"),
    (["experiment=digits_frontier_dataset_gap", "frontier.lams=[20]"], "frontier.lams entry=20 must be in"),
    (["experiment=digits_frontier_dataset_gap", "~tune"], "have a tuned w but the study has no `tune:`"),
    (["+comparisons=[[w2sd,nope]]"], "comparison (w2sd, nope) names a method"),
    (["experiment=digits_video", "video.frames=6"], "a digit moving 1 px/frame leaves a 12px canvas within 6 frames"),
    (["experiment=digits_video", "reference.clips=1"], "reference.clips=1"),
    (["experiment=digits_video", "conditional=yes"], "conditional='yes' must be true or false"),
    (["experiment=digits_frontier_weight_gap", "+adaptive={quantiles:[0.2],seeds:[100]}"],
     "the per-sample labels of a class-conditional net cannot follow"),
])
def test_bad_study_config_fails_in_validate(overrides: list[str], needle: str, compose_config) -> None:
    from w2sd.runner import build_experiment

    experiment = [] if overrides[0].startswith("experiment=") else ["experiment=digits_dataset_gap"]
    cfg = compose_config([*experiment, *overrides])
    with pytest.raises(ConfigError, match=re.escape(needle)):
        build_experiment(cfg).validate()


@pytest.mark.parametrize("name, metric", [("digits_dataset_gap", "minority_fraction"),
                                          ("digits_condition_gap", "adherence")])
def test_study_runs_end_to_end_on_committed_nets(name: str, metric: str, compose_config, tmp_path: Path) -> None:
    from w2sd.runner import run_experiment

    cfg = compose_config([f"experiment={name}", "logger=none", "seeds=[0,1]", "samples_per_seed=4", "sampler.T=3",
                          "methods.strong_equal_nfe.T=7", "figures=false"])
    results = run_experiment(cfg, tmp_path)
    assert results["nfe"]["w2sd"] == results["nfe"]["strong_equal_nfe"] == 7 and results["nfe"]["strong"] == 3
    for row in results["metrics"].values():
        # with two seeds the bootstrap distribution of the mean is a, (a+b)/2, b with mass ¼, ½, ¼: its 2.5 % and
        # 97.5 % quantiles are exactly the smaller and the larger seed's value
        a, b = row["per_seed"]["fd"]
        assert row["fd"] == pytest.approx((a + b) / 2) and row["fd_ci"] == pytest.approx([min(a, b), max(a, b)])
    w2sd, strong = results["metrics"]["w2sd"]["per_seed"], results["metrics"]["strong"]["per_seed"]
    fd = results["extra"]["comparisons"]["w2sd_vs_strong"]["fd"]
    diffs = [x - y for x, y in zip(w2sd["fd"], strong["fd"])]
    assert fd["mean"] == pytest.approx(sum(diffs) / 2) and [fd["ci_low"], fd["ci_high"]] == pytest.approx(
        sorted(diffs))
    assert fd["wins"] == sum(d < 0 for d in diffs) and fd["losses"] == sum(d > 0 for d in diffs)  # lower fd wins
    assert set(results["extra"]["comparisons"]["w2sd_vs_strong"]) == {metric, "fd"} | (
        {"balance_error"} if name == "digits_dataset_gap" else set())


def test_video_study_pools_frame_fd_over_seeds_and_compares_dynamic_degree_without_a_winner(
        compose_config, tmp_path: Path) -> None:
    from experiments.digits.evaluator import Evaluator
    from experiments.digits.video_metrics import frame_crops
    from w2sd.runner import run_experiment

    cfg = compose_config(["experiment=digits_video", "logger=none", "seeds=[0,1]", "samples_per_seed=4",
                          "sampler.T=3", "methods.strong_equal_nfe.T=7", "reference.clips=50", "figures=false"])
    results = run_experiment(cfg, tmp_path)
    # the pooled real floor, rebuilt here from its definition: seed s's held-out clips, both seeds together
    classifier = load_classifier(M.classifier_spec(cfg.digits), M.COMMITTED_DIR)[0]
    video = {"frames": cfg.video.frames, "size": cfg.video.size}
    reference = moving_digit_clips(all_digits(), 50,
                                   torch.Generator().manual_seed(cfg.reference.seed), **video).video
    real = torch.cat([moving_digit_clips(digits_split("test"), 4, torch.Generator().manual_seed(s), **video).video
                      for s in (0, 1)])
    pooled = results["extra"]["frame_fd_pooled"]
    assert set(pooled) == {*cfg.methods, "real"}
    assert pooled["real"] == pytest.approx(Evaluator(classifier, frame_crops(reference)).frechet_distance(
        frame_crops(real)), rel=1e-5)
    dd = results["extra"]["comparisons"]["w2sd_vs_strong"]["dynamic_degree"]
    per_seed = [a - b for a, b in zip(results["metrics"]["w2sd"]["per_seed"]["dynamic_degree"],
                                      results["metrics"]["strong"]["per_seed"]["dynamic_degree"])]
    assert (dd["higher"], dd["equal"], dd["lower"]) == (sum(d > 0 for d in per_seed), sum(d == 0 for d in per_seed),
                                                       sum(d < 0 for d in per_seed))
    assert "wins" not in dd


def test_conditional_clip_net_gets_one_digit_per_clip_cycling_through_the_classes(compose_config) -> None:
    """Clip i of a conditional video study asks its net for digit i mod 10 (the clip world's 'prompt') at the
    study's CFG scale."""
    from w2sd.runner import build_experiment

    experiment = build_experiment(compose_config(["experiment=digits_video"]))
    experiment.validate()
    assert {s.spec["net"]["num_classes"] for s in experiment.snapshots.values()} == {10}
    net = build_unet({**experiment.snapshots["strong"].spec, "net": {**tiny_spec(3)["net"], "temporal_attention":
                                                                    True}})
    torch.nn.init.normal_(net.class_emb.weight)  # distinct label embeddings, so a wrong label changes ε
    n, x = 12, torch.randn(12, 1, 5, 12, 12)
    eps = experiment.denoisers({"strong": net}, n)["strong"](x, 500)
    alphas = experiment.schedule(2).alphas_cumprod
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    expected = UNetEps(net, alphas, labels, experiment.cfg.guidance)(x, 500)
    assert torch.allclose(eps, expected)
    assert not torch.allclose(eps, UNetEps(net, alphas)(x, 500), atol=1e-3)  # the null label is not what it used


def test_stored_video_studies_kept_their_budgets_and_name_the_committed_nets() -> None:
    """Issue 14's budgets on the stored runs: one training run (both nets) ≤ 15 min wall, each study without training
    ≤ 2 min, five seeds; their nets are the committed checkpoints, the same for both studies, and the steps study's
    `strong` is digits_video's `strong` seed for seed (same nets, x_T and sampler)."""
    import json

    root = Path(__file__).resolve().parent.parent / "results"
    video, steps = (json.loads((root / name / "results.json").read_text())
                    for name in ("digits_video", "digits_video_steps"))
    for res in (video, steps):
        extra = res["extra"]
        assert extra["nets"]["strong"]["train_time_s"] <= 15 * 60
        assert res["total_time_s"] - extra["prepare_time_s"] <= 120 and extra["num_seeds"] == 5
        assert all((M.COMMITTED_DIR / net["checkpoint"]).exists() for net in extra["nets"].values())
    assert steps["extra"]["nets"] == video["extra"]["nets"]
    assert steps["metrics"]["strong"]["per_seed"] == video["metrics"]["strong"]["per_seed"]


def test_frame_target_is_read_at_the_image_worlds_number_of_steps() -> None:
    """The like-for-like reading samples the clip net with the T of the study that sets the target; a steps study
    without that T is an error naming the config to extend."""
    import copy
    import json

    from paper_figures.digits_tables import frame_target

    root = Path(__file__).resolve().parent.parent / "results"
    video, steps, image = (json.loads((root / name / "results.json").read_text())
                           for name in ("digits_video", "digits_video_steps", "digits_weight_gap"))
    pooled = steps["extra"]["frame_fd_pooled"]
    for t_image, method in ((20, "strong_T20"), (28, "strong_T28"), (10, "strong")):
        yardstick = copy.deepcopy(image)
        yardstick["config"]["sampler"]["T"] = t_image
        t = frame_target(video, steps, yardstick)
        assert t["like"] == pooled[method] and t["study"] == video["extra"]["frame_fd_pooled"]["strong"]
        assert t["target"] == 1.5 * image["metrics"]["strong"]["fd"] and t["T_image"] == t_image
        assert t["like_verdict"] == ("meets" if pooled[method] <= t["target"] else "misses")
    yardstick["config"]["sampler"]["T"] = 50
    with pytest.raises(ValueError, match="no method at T = 50.*digits_video_steps.yaml"):
        frame_target(video, steps, yardstick)


def test_video_header_states_the_thread_count_of_the_training_run() -> None:
    """The docs header reports training time with the thread count stored by the training run, which can differ
    from the study's own `digits.torch_threads`."""
    import copy
    import json

    from paper_figures.digits_tables import header

    res = json.loads((Path(__file__).resolve().parent.parent / "results/digits_video/results.json").read_text())
    one, two = copy.deepcopy(res), copy.deepcopy(res)
    one["extra"]["nets"]["strong"]["train_threads"] = 1
    two["extra"]["nets"]["strong"]["train_threads"] = 2
    for variant in (one, two):
        variant["config"]["digits"]["torch_threads"] = 3
    assert "min CPU, one thread)" in header("digits_video", one)
    assert "min CPU, 2 threads)" in header("digits_video", two)


def test_w2sd_restores_the_minority_digit_on_the_dataset_gap(compose_config, tmp_path: Path) -> None:
    """The study's claim at small size: W2SD (λ = T − 1) raises the minority share and lowers FD by a margin."""
    from w2sd.runner import run_experiment

    cfg = compose_config(["experiment=digits_dataset_gap", "logger=none", "seeds=[0]", "samples_per_seed=60",
                          "sampler.T=10", "~methods.ideal", "~methods.weak", "~methods.s2wd",
                          "~methods.strong_equal_nfe", "diagnostic_samples=0", "figures=false"])
    m = run_experiment(cfg, tmp_path)["metrics"]
    assert m["w2sd"]["minority_fraction"] >= m["strong"]["minority_fraction"] + 0.1
    assert m["w2sd"]["fd"] <= 0.75 * m["strong"]["fd"]


def test_train_true_retrains_every_net_with_lightning_and_logs_to_wandb(compose_config, tmp_path: Path) -> None:
    from w2sd.runner import run_experiment

    cfg = compose_config(["experiment=digits_dataset_gap", "logger=wandb", "train=true",
                          f"digits.checkpoint_dir={tmp_path / 'ckpt'}", "study.steps=3", "digits.classifier.steps=3",
                          "digits.image_net.channels=[8,16]", "seeds=[0]", "samples_per_seed=4", "sampler.T=3",
                          "methods.strong_equal_nfe.T=7", "figures=false"])
    results = run_experiment(cfg, tmp_path / "run")
    assert len(list((tmp_path / "ckpt").glob("unet2d-*.pt"))) == 3
    assert len(list((tmp_path / "ckpt").glob("classifier-*.pt"))) == 1
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 5  # classifier + three nets (training curves) + the evaluation run
    assert results["extra"]["nets"]["strong"]["checkpoint"].startswith("unet2d-")


def test_train_true_writes_to_the_cache_and_never_over_committed_checkpoints(compose_config, tmp_path: Path) -> None:
    from experiments.digits.models import COMMITTED_DIR
    from w2sd.runner import run_experiment

    before = {p.name: p.read_bytes() for p in COMMITTED_DIR.glob("*.pt")}
    cfg = compose_config(["experiment=digits_dataset_gap", "logger=none", "train=true", f"paths.cache_dir={tmp_path}",
                          "study.steps=3", "digits.image_net.channels=[8,16]", "seeds=[0]", "samples_per_seed=4",
                          "sampler.T=3", "methods.strong_equal_nfe.T=7", "figures=false"])
    run_experiment(cfg, tmp_path / "run")
    assert len(list((tmp_path / "digits").glob("unet2d-*.pt"))) == 3
    assert not list((tmp_path / "digits").glob("classifier-*.pt"))  # the committed evaluator is reused
    assert {p.name: p.read_bytes() for p in COMMITTED_DIR.glob("*.pt")} == before


def test_frontier_study_matches_nfe_and_applies_the_held_out_w(compose_config, tmp_path: Path) -> None:
    from w2sd.runner import run_experiment

    cfg = compose_config(["experiment=digits_frontier_dataset_gap", "logger=none", "seeds=[0]", "samples_per_seed=6",
                          "sampler.T=4", "frontier.lams=[1,3]", "tune.seeds=[100]", "tune.grid=[0.5,3.0]",
                          "comparisons=[[w2sd_lam3_first,advanced_guidance]]", "adaptive.quantiles=[0.5]"])
    results = run_experiment(cfg, tmp_path)
    nfe = results["nfe"]
    for lam in (1, 3):  # counted denoiser calls: W2SD T + 2λ, DDIM with T + 2λ steps, guidance with (T + 2λ)/2 steps
        assert nfe[f"w2sd_lam{lam}_first"] == nfe[f"ddim_nfe{4 + 2 * lam}"] == nfe[f"autoguidance_nfe{4 + 2 * lam}"] \
            == 4 + 2 * lam
    assert "w2sd_lam1_last" in nfe and "w2sd_lam3_last" not in nfe  # λ = T − 1: both windows are the same steps
    tuning = results["extra"]["tuning"]
    scores = dict((w, s) for w, s in tuning["scores"])
    assert tuning["w"] == min(scores, key=scores.get)  # lower held-out FD wins
    assert all(results["extra"]["method_options"][name]["w"] == tuning["w"] for name in tuning["methods"])
    assert {"w2sd_lam1_last_vs_autoguidance_nfe6", "w2sd_lam3_first_vs_autoguidance"} <= set(
        results["extra"]["comparisons"])


def test_difference_guidance_between_cfg_scales_is_cfg_at_the_extrapolated_scale() -> None:
    """ε_s + w(ε_s − ε_w) with ε_s, ε_w at CFG s, s_w is CFG at s + w(s − s_w): the condition-gap identity."""
    from w2sd.sampling import sample_autoguidance, sample_ddim
    from w2sd.schedule import make_schedule

    torch.manual_seed(0)
    net = build_unet(tiny_spec()).eval()
    labels, x = torch.arange(6) % 10, torch.randn(6, 1, 8, 8)
    schedule = make_schedule(5, **{**SCHEDULE, "spacing": "trailing"})
    alphas = training_alphas_cumprod(SCHEDULE)

    def cfg(scale):
        return UNetEps(net, alphas, labels, scale, clip_x0=False)

    guided = sample_autoguidance(cfg(3.0), cfg(0.0), x, schedule, w=0.5).x
    assert torch.allclose(guided, sample_ddim(cfg(4.5), x, schedule).x, atol=1e-4)
    assert not torch.allclose(guided, sample_ddim(cfg(3.0), x, schedule).x, atol=1e-2)


def test_cheapest_lam_keeps_ninety_percent_of_the_full_gain() -> None:
    from paper_figures.digits_compute import cheapest_lam

    assert cheapest_lam([(0, 0.0), (1, 0.5), (4, 0.89), (8, 0.91), (19, 1.0)]) == 8
    assert cheapest_lam([(0, 0.0), (1, 0.95), (19, 1.0)]) == 1
    assert cheapest_lam([(0, 0.0), (4, 0.2), (19, -0.1)]) is None


def test_advanced_guidance_reads_the_weak_model_on_the_strong_step() -> None:
    """Closed form with linear ε-models: on each level but the last, ε = ε_s(x) + w(ε_s(x) − ε_w(x', t)) where x' is
    the strong DDIM step from x; DDIM written out by hand here (x̂₀ then re-noise)."""
    from w2sd.sampling import sample_advanced_guidance
    from w2sd.schedule import make_schedule

    schedule = make_schedule(3, **SCHEDULE, spacing="trailing")
    w = 0.7

    def strong(x, t):
        return 0.3 * x

    def weak(x, t):
        return -0.2 * x + 1e-3 * t  # the timestep term catches a weak call at the wrong t

    def transfer(x, eps, a_from, a_to):
        return a_to**0.5 * (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5 + (1 - a_to) ** 0.5 * eps

    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = sample_advanced_guidance(strong, weak, x, schedule, w=w)
    y = x
    for i, t in enumerate(schedule.timesteps):
        a, b = schedule.level_alpha_bar(i), schedule.level_alpha_bar(i + 1)
        eps = strong(y, t)
        if i < schedule.num_steps - 1:
            eps = eps + w * (eps - weak(transfer(y, eps, a, b), t))
        y = transfer(y, eps, a, b)
    assert torch.allclose(out.x, y, atol=1e-10) and out.nfe == 2 * 3 - 1


def test_toy_frontier_costs_fixed_lambda_exactly_and_adaptive_in_between(compose_config, tmp_path: Path) -> None:
    from w2sd.runner import build_experiment, run_experiment

    cfg = compose_config(["experiment=toy_lambda_frontier", "logger=none", "seeds=[0,1]", "num_samples=200",
                          "sampler.T=6", "frontier.lams=[1,5]", "adaptive.quantiles=[0.5]"])
    m = run_experiment(cfg, tmp_path)["metrics"]
    for name, cost in (("strong", 6), ("w2sd_lam1_first", 8), ("w2sd_lam1_last", 8), ("w2sd_lam5_first", 16)):
        assert m[name]["nfe_per_sample"] == cost
    assert 8 < m["w2sd_adaptive_q0.5"]["nfe_per_sample"] < 16  # always the first reflection, then about half stop
    with pytest.raises(ConfigError, match="adaptive.seeds"):
        build_experiment(compose_config(["experiment=toy_lambda_frontier", "adaptive.seeds=[0]"])).validate()
