# `python run.py experiment=evaluate run_dir=...` end to end on a tiny run, and every bad-input path it must refuse.
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eval_tiny_models import PROMPTS, TinyFeatures, make_run_dir, prompt_file, tiny_clip, tiny_head, tiny_hps
from PIL import Image

from w2sd.evaluation.distribution import fid, inception_score
from w2sd.evaluation.run_dir import load_generation_run, open_image
from w2sd.stats import bootstrap_ci
from w2sd.validation import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_evaluate_command_writes_scores_results_table_and_wandb(tmp_path):
    clip = tiny_clip(tmp_path / "clip")
    base, hps = tiny_hps(tmp_path / "hps")
    head = tiny_head(tmp_path / "head.pth", 16)
    run = make_run_dir(tmp_path / "gen", prompt_file(tmp_path), n=4)
    out = tmp_path / "eval"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "run.py", "experiment=evaluate", f"run_dir={run}", f"hydra.run.dir={out}",
           f"scorers.hps.checkpoint={hps}", f"scorers.hps.base={base}", f"scorers.pickscore.model={clip}",
           f"scorers.pickscore.processor={clip}", f"scorers.aesthetic.clip={clip}", f"scorers.aesthetic.head={head}",
           "bootstrap.resamples=500", "scorers.hps.device=cpu", "scorers.pickscore.device=cpu",
           "scorers.aesthetic.device=cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and {r["method"] for r in rows} == {"weak", "strong", "w2sd"}
    assert all(r["prompt"] == PROMPTS[int(r["index"])] for r in rows)
    results = json.loads((out / "results.json").read_text())
    metrics = results["metrics"]
    for method in ("weak", "strong", "w2sd"):
        scores = [float(r["pickscore"]) for r in rows if r["method"] == method]
        assert metrics[method]["pickscore"] == pytest.approx(sum(scores) / 4) and metrics[method]["n"] == 4
        # The CI is the percentile bootstrap of exactly these per-prompt scores under the configured resamples/seed
        # (bootstrap_ci itself is checked against exact enumeration and the normal closed form in test_eval_stats).
        ci = bootstrap_ci(scores, confidence=0.95, resamples=500, seed=0)
        assert metrics[method]["pickscore_ci"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    comp = results["extra"]["comparisons"]["w2sd_vs_strong"]
    assert comp["preference"]["w2sd"] + comp["preference"]["strong"] == pytest.approx(100.0)
    win = comp["metrics"]["hps"]
    assert win["wins"] + win["ties"] + win["losses"] == 4
    assert "strong_vs_weak" in results["extra"]["comparisons"]
    assert "| w2sd |" in (out / "table.md").read_text() and "w2sd vs strong" in proc.stdout
    assert list((out / "wandb").glob("offline-run-*"))


@pytest.fixture
def run(tmp_path):
    return make_run_dir(tmp_path / "gen", prompt_file(tmp_path), n=4)


def test_a_complete_run_loads_aligned_across_methods(run):
    gen = load_generation_run(run)
    assert list(gen.samples) == ["weak", "strong", "w2sd"] and gen.indices == [0, 1, 2, 3] and not gen.skipped


def test_missing_image_is_an_error_or_an_explicit_skip(run):
    (run / "strong" / "00002.png").unlink()
    with pytest.raises(ConfigError, match="1 of 4 prompts .* prompt 2: missing image"):
        load_generation_run(run)
    gen = load_generation_run(run, on_missing="skip")
    assert gen.indices == [0, 1, 3] and all(len(rows) == 3 for rows in gen.samples.values())
    assert 2 in gen.skipped and "missing image" in gen.skipped[2]


def test_corrupt_png_is_reported(run):
    (run / "w2sd" / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ConfigError, match=r"corrupt image .*00001.png \((?!NoneType)\w+\)"):
        load_generation_run(run)
    assert load_generation_run(run, on_missing="skip").indices == [0, 2, 3]


def rewrite_manifest(run: Path, edit) -> None:
    with (run / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    rows = edit(rows)
    with (run / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["method", "index", "seed", "prompt", "path", "frames"])
        writer.writeheader()
        writer.writerows(rows)


def test_method_missing_rows_in_manifest_is_not_averaged_silently(run):
    rewrite_manifest(run, lambda rows: [r for r in rows if not (r["method"] == "w2sd" and r["index"] == "3")])
    with pytest.raises(ConfigError, match="no w2sd image in manifest"):
        load_generation_run(run)


def test_mismatched_seeds_between_methods_are_refused(run):
    def edit(rows):
        for r in rows:
            if r["method"] == "strong" and r["index"] == "1":
                r["seed"] = "99"
        return rows

    rewrite_manifest(run, edit)
    with pytest.raises(ConfigError, match="different seeds across methods"):
        load_generation_run(run, on_missing="skip")


def test_images_from_a_different_prompt_set_are_refused(tmp_path, run):
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ConfigError, match="different prompt set"):
        load_generation_run(run, prompts_file=str(prompt_file(other, ["x", "y", "z", "w", "v"])))
    with pytest.raises(ConfigError, match="not 'pickapic'"):
        load_generation_run(run, expected_prompt_set="pickapic")


def test_duplicate_rows_and_missing_manifest_are_refused(run, tmp_path):
    rewrite_manifest(run, lambda rows: rows + rows[:1])
    with pytest.raises(ConfigError, match="one image per prompt"):
        load_generation_run(run)
    with pytest.raises(ConfigError, match="manifest.csv not found"):
        load_generation_run(tmp_path)


def test_pickapic_protocol_skips_empty_captions(tmp_path, run):
    # prompt_file writes an empty caption at row 1: index 1 must be the *second non-empty* caption.
    assert load_generation_run(run).samples["weak"][1].prompt == PROMPTS[1]


def test_missing_weights_surface_as_the_scorers_one_line_error():
    from omegaconf import OmegaConf

    from experiments.evaluate import EvaluateExperiment
    from w2sd.evaluation.checkpoints import MissingCheckpoint

    cfg = OmegaConf.create({"scorers": {"pickscore": {"_target_": "w2sd.evaluation.pickscore.PickScoreScorer",
                                                      "model": "nobody/none", "device": "cpu"}}})
    with pytest.raises(MissingCheckpoint, match="nobody/none"):
        EvaluateExperiment(cfg).build_scorer("pickscore")


def evaluate_config(compose_config, run: Path, *overrides: str):
    return compose_config(["experiment=evaluate", f"run_dir={run}", "scorer_names=[]", "preference_scorer=null",
                           "logger=none", "bootstrap.resamples=100", *overrides])


def test_fid_and_is_reach_results_json_and_table_3(tmp_path, run, compose_config):
    from paper_figures.paper_tables import render
    from w2sd.runner import run_experiment

    # Reference = the weak method's own images, so weak's FID is ~0; strong's images are darkened (far in
    # TinyFeatures' colour space) and w2sd's are saturated primaries (confident, diverse "classes": higher IS).
    reference = tmp_path / "reference"
    reference.mkdir()
    for png in (run / "weak").glob("*.png"):
        (reference / png.name).write_bytes(png.read_bytes())
    primaries = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 0)]
    for k, colour in enumerate(primaries):
        dark = Image.open(run / "strong" / f"{k:05d}.png").point(lambda v: v // 3)
        dark.save(run / "strong" / f"{k:05d}.png")
        Image.new("RGB", dark.size, colour).save(run / "w2sd" / f"{k:05d}.png")
    cfg = evaluate_config(compose_config, run, "distribution.metrics=[fid,is]",
                          f"distribution.reference_dir={reference}", "distribution.splits=2",
                          "distribution.extractor={_target_:eval_tiny_models.TinyFeatures}",
                          "distribution.device=cpu", "comparisons=[]")
    results = run_experiment(cfg, tmp_path / "results" / "eval_t3")
    metrics = results["metrics"]
    assert metrics["weak"]["fid"] == pytest.approx(0.0, abs=1e-6) and "fid_ci" not in metrics["weak"]
    # Each method's set-level numbers are those of its own images (FID and IS are checked against their closed forms
    # in test_eval_scorers): FID from the features, IS from the separate `logits` output with the configured seed.
    ref = [open_image(p) for p in sorted(reference.glob("*.png"))]
    for method in ("strong", "w2sd"):
        ims = [open_image(p) for p in sorted((run / method).glob("*.png"))]
        assert metrics[method]["fid"] == pytest.approx(fid(ims, ref, feature=TinyFeatures()), rel=1e-9)
        mean, std = inception_score(ims, TinyFeatures().logits, splits=2, seed=0)
        assert (metrics[method]["is"], metrics[method]["is_std"]) == pytest.approx((mean, std), rel=1e-9)
    assert metrics["strong"]["fid"] > 0.05 and metrics["w2sd"]["is"] > metrics["weak"]["is"] + 0.01
    assert results["extra"]["distribution"]["n_reference"] == 4
    table = render("3", tmp_path / "results")
    assert f"| {metrics['w2sd']['is']:.4f} |" in table and f"| {metrics['w2sd']['fid']:.4f} |" in table
    assert "Set-level" in (tmp_path / "results" / "eval_t3" / "table.md").read_text()


@pytest.mark.parametrize("overrides, message", [
    (["distribution.metrics=[fid]"], "reference_dir=null"),
    (["distribution.metrics=[fid]", "distribution.reference_dir=/nonexistent/ref"], "is not a folder"),
    (["distribution.metrics=[fid]", "distribution.reference_dir={empty}"], "holds no"),
    (["distribution.metrics=[is]", "distribution.splits=10"], "needs >= 10 images"),
    (["distribution.metrics=[kid]"], "choose from"),
])
def test_bad_distribution_config_is_refused_before_any_work(tmp_path, run, compose_config, overrides, message):
    from experiments.evaluate import EvaluateExperiment

    (tmp_path / "empty").mkdir()
    overrides = [o.format(empty=tmp_path / "empty") for o in overrides]
    with pytest.raises(ConfigError, match=message):
        EvaluateExperiment(evaluate_config(compose_config, run, *overrides)).validate()


def test_default_inception_without_torch_fidelity_or_weights_fails_in_one_line():
    from w2sd.evaluation.distribution import inception_extractor

    with pytest.raises(ConfigError) as err:
        inception_extractor("2048", "/nonexistent/pt_inception.pth")
    fix = ("set distribution.inception_weights=<local pt_inception-2015-12-05-6726825d.pth> or inject "
           "distribution.extractor={_target_: <your nn.Module>}")
    assert str(err.value).endswith("; " + fix) and "\n" not in str(err.value)


def test_video_runs_get_the_labelled_imaging_stand_in_by_default(tmp_path, compose_config):
    from experiments.evaluate import EvaluateExperiment

    video = make_run_dir(tmp_path / "video", prompt_file(tmp_path), n=2, frames=4)
    experiment = EvaluateExperiment(evaluate_config(compose_config, video, "video.aesthetic=null"))
    experiment.validate()
    metrics = experiment.aggregate(experiment.score({}))
    assert 0 < metrics["w2sd"]["imaging_quality_laplacian_not_musiq"] <= 100
    assert "imaging_quality" not in metrics["w2sd"] and "imaging_quality_musiq" not in metrics["w2sd"]


def test_an_injected_extractor_without_separate_logits_is_refused_for_is(run, compose_config):
    from experiments.evaluate import EvaluateExperiment

    experiment = EvaluateExperiment(evaluate_config(compose_config, run, "distribution.metrics=[fid,is]",
                                                    "distribution.splits=2", f"distribution.reference_dir={run}/weak",
                                                    "distribution.extractor={_target_:torch.nn.Identity}"))
    experiment.validate()
    with pytest.raises(ConfigError, match="torch.nn.Identity has no `logits` method"):
        experiment.build_extractors()


def test_samples_are_ordered_by_prompt_index_and_point_into_the_run_folder(run):
    rewrite_manifest(run, lambda rows: rows[::-1])  # manifest order no longer index order; methods reversed too
    gen = load_generation_run(run, methods=["w2sd", "weak"])
    assert list(gen.samples) == ["w2sd", "weak"] and gen.indices == [0, 1, 2, 3]
    first = gen.samples["weak"][2]
    assert (first.index, first.seed, first.prompt, first.frames) == (2, 2, PROMPTS[2], 1)
    assert first.path == run / "weak" / "00002.png" and gen.prompt_set == "tiny" and gen.root == run
    with pytest.raises(ConfigError, match=r"methods \['strong2'\] are not in"):
        load_generation_run(run, methods=["weak", "strong2"])


def test_skipped_prompts_are_listed_in_index_order_and_a_run_with_none_left_is_refused(run):
    for method, i in (("w2sd", 3), ("weak", 0)):
        (run / method / f"{i:05d}.png").unlink()
    gen = load_generation_run(run, on_missing="skip")
    assert list(gen.skipped) == [0, 3] and gen.indices == [1, 2]
    with pytest.raises(ConfigError, match="2 of 4 prompts .* prompt 0: missing image"):
        load_generation_run(run, on_missing="error")
    for i in (1, 2):
        (run / "strong" / f"{i:05d}.png").unlink()
    with pytest.raises(ConfigError, match="no prompt has a readable image in every method"):
        load_generation_run(run, on_missing="skip")


def test_manifest_prompts_are_compared_after_stripping_and_must_lie_inside_the_set(run):
    rewrite_manifest(run, lambda rows: [{**r, "prompt": r["prompt"] + "  "} for r in rows])
    assert load_generation_run(run).samples["w2sd"][3].prompt == PROMPTS[3] + "  "
    rewrite_manifest(run, lambda rows: [{**r, "prompt": "a red dog"} if r["index"] == "0" else r for r in rows])
    with pytest.raises(ConfigError, match="is 'a red dog' but captions.csv has 'a red cat';"):
        load_generation_run(run)
    # the set holds 6 prompts: index 6 is the first one past its end
    rewrite_manifest(run, lambda rows: [{**r, "index": "6", "seed": "6", "prompt": "x"} if r["index"] == "0" else r
                                        for r in rows])
    beyond = "prompt 6 of 'weak' is 'x' but captions.csv has '<beyond the end of the set>';"
    with pytest.raises(ConfigError, match=beyond):
        load_generation_run(run)


@pytest.mark.parametrize(("content", "message"), [
    ("method,index,seed,prompt,path\nweak,0,0,a red cat,weak/00000.png\n", r"lacks columns \['frames'\]"),
    ("method,index,seed,prompt,path,frames\nweak,zero,0,a red cat,weak/00000.png,1\n", "must be integers"),
    ("method,index,seed,prompt,path,frames\n", "lists no images"),
])
def test_malformed_manifests_are_refused_in_one_line(run, content, message):
    (run / "manifest.csv").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_generation_run(run)


def test_prompt_set_file_is_found_beside_the_run_or_in_prompts_dir(tmp_path):
    elsewhere = tmp_path / "sets"
    elsewhere.mkdir()
    prompt_file(elsewhere)
    run = make_run_dir(tmp_path / "gen", Path("captions.csv"), n=2)  # results.json names a bare file name
    with pytest.raises(ConfigError, match=re.escape(f"captions.csv not found (looked in ., {run}); set prompts_file")):
        load_generation_run(run)
    assert load_generation_run(run, prompts_dir=elsewhere).indices == [0, 1]
    prompt_file(run)  # now beside the run: found without prompts_dir
    assert load_generation_run(run).indices == [0, 1]
    (run / "results.json").unlink()
    with pytest.raises(ConfigError, match="does not name its prompt set"):
        load_generation_run(run)


@pytest.mark.parametrize(("header", "column"), [("id,text", "text"), ("Prompts,caption", "Prompts"),
                                                ("caption,prompt", "prompt")])
def test_an_override_prompt_file_uses_the_first_known_prompt_column(tmp_path, run, header, column):
    names = header.split(",")
    rows = [{name: (p if name == column else "zzz") for name in names} for p in PROMPTS]
    with (tmp_path / "override.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    gen = load_generation_run(run, prompts_file=str(tmp_path / "override.csv"))
    assert gen.indices == [0, 1, 2, 3] and gen.prompt_set is None


def test_an_override_without_a_prompt_column_is_refused(tmp_path, run):
    for text in ("id,label\n0,a red cat\n", ""):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(ConfigError, match="none of the prompt columns"):
            load_generation_run(run, prompts_file=str(tmp_path / "bad.csv"))


def test_an_override_exported_with_a_byte_order_mark_skips_empty_rows(tmp_path, run):
    """Spreadsheet exports start with a BOM; an empty row is skipped as generation skips it."""
    lines = ["prompt,id", f"{PROMPTS[0]},0", ",1"] + [f"{p},{i + 2}" for i, p in enumerate(PROMPTS[1:])]
    (tmp_path / "bom.csv").write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    assert load_generation_run(run, prompts_file=str(tmp_path / "bom.csv")).indices == [0, 1, 2, 3]


def test_the_runs_own_prompt_column_is_used_when_it_names_one(tmp_path):
    """results.json says column=caption; the file's `prompt` column (first in the fallback order) is different."""
    with (tmp_path / "two.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["prompt", "caption"]] + [["zzz", p] for p in PROMPTS])
    run = make_run_dir(tmp_path / "gen", tmp_path / "two.csv", n=3)
    results = json.loads((run / "results.json").read_text())
    results["config"]["prompts"]["column"] = "caption"
    (run / "results.json").write_text(json.dumps(results))
    assert load_generation_run(run).indices == [0, 1, 2]


def test_a_method_without_a_manifest_row_is_skipped_in_every_method(run):
    rewrite_manifest(run, lambda rows: [r for r in rows if not (r["method"] == "strong" and r["index"] == "1")])
    gen = load_generation_run(run, on_missing="skip")
    assert gen.indices == [0, 2, 3] and gen.skipped == {1: "no strong image in manifest"}


def test_open_image_returns_rgb_of_any_mode(tmp_path):
    Image.new("LA", (5, 3), (7, 200)).save(tmp_path / "grey.png")
    im = open_image(tmp_path / "grey.png")
    assert im.mode == "RGB" and im.size == (5, 3) and im.getpixel((0, 0)) == (7, 7, 7)
