# One paper-table command on tiny pipelines and scorers: table.md beside the paper, dry run, kill/resume, shards.
from __future__ import annotations

import csv
import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402
from eval_tiny_models import TinyFeatures, pattern_image, tiny_clip, tiny_head, tiny_hps  # noqa: E402

from experiments.gallery import LABEL_HEIGHT, gallery_indices, tile  # noqa: E402
from experiments.table import fid_from_statistics  # noqa: E402
from w2sd.evaluation.distribution import fid  # noqa: E402
from w2sd.runner import run_experiment  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("weak", "strong", "w2sd")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny SDXL folder, a GenEval-style prompt file (raw + refined) and tiny HPS / PickScore / aesthetic weights."""
    root = tmp_path_factory.mktemp("tiny")
    F.sdxl_pipeline(0).save_pretrained(root / "sdxl")
    prompts = root / "geneval.csv"
    with prompts.open("w", newline="") as handle:
        csv.writer(handle).writerows([["prompt", "refined"], *([f"cat {i}", f"a fluffy cat {i}"] for i in range(4))])
    clip = tiny_clip(root / "clip")
    base, hps = tiny_hps(root / "hps")
    return {"sdxl": root / "sdxl", "prompts": prompts, "clip": clip, "hps_base": base, "hps": hps,
            "head": tiny_head(root / "head.pth", 16)}


def table_5_overrides(tiny: dict[str, Path], n: int) -> list[str]:
    """Paper Table 5 (one block, SDXL prompt gap) on tiny weights: 32² images, T = 2."""
    scorers = {"hps": {"checkpoint": tiny["hps"], "base": tiny["hps_base"]},
               "pickscore": {"model": tiny["clip"], "processor": tiny["clip"]},
               "aesthetic": {"clip": tiny["clip"], "head": tiny["head"]}}
    out = ["experiment=table_5", f"num_prompts={n}", "gallery.height=32",
           f"++blocks.eval_t5.set.gap.models.base.path={tiny['sdxl']}",
           f"++blocks.eval_t5.set.prompts.file={tiny['prompts']}", "++generate.pipeline.height=32",
           "++generate.pipeline.width=32", "++generate.sampler.T=2", "++generate.sampler.lam=1",
           "++evaluate.bootstrap.resamples=200"]
    for name, keys in scorers.items():
        out += [f"++evaluate.scorers.{name}.{k}={v}" for k, v in keys.items()]
        out.append(f"++evaluate.scorers.{name}.device=cpu")
    return out


def images(run: Path) -> dict[str, int]:
    """Finished images (PNG and its JSON sidecar, written last) → modification time."""
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for m in METHODS for p in run.glob(f"eval_t5/gen/{m}/*.png")
            if p.with_suffix(".json").is_file()}


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_table_command_is_killed_then_resumed_to_table_and_gallery(tiny, tmp_path, compose_config) -> None:
    n, run = 2, tmp_path / "table"
    overrides = table_5_overrides(tiny, n)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.Popen([sys.executable, "run.py", *overrides, f"hydra.run.dir={run}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not images(run) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    finished = images(run)
    assert finished and len(finished) < n * len(METHODS), proc.stderr.read().decode()[-2000:]
    assert not (run / "table.md").exists()

    results = run_experiment(compose_config(overrides), run)  # the same command again: it resumes

    after = images(run)
    assert len(after) == n * len(METHODS)
    assert {k: after[k] for k in finished} == finished  # images finished before the kill were not regenerated
    table = (run / "table.md").read_text()
    for paper in ("25.3897", "28.5698", "29.4023", "5.8812", "21.8053", "54.2275"):  # paper.md §4, Table 5
        assert paper in table
    scores = read_csv(run / "eval_t5" / "eval" / "scores.csv")
    cells = {(r["method"], r["metric"]): r for r in read_csv(run / "table.csv")}
    for method in METHODS:
        mine = [float(r["pickscore"]) for r in scores if r["method"] == method]
        assert len(mine) == n
        cell = cells[(method, "PickScore")]
        assert float(cell["ours"]) == pytest.approx(sum(mine) / n)
        assert float(cell["difference"]) == pytest.approx(sum(mine) / n - float(cell["paper"]))
        assert f"{sum(mine) / n:.4f} [" in table
    pair = json.loads((run / "eval_t5" / "eval" / "results.json").read_text())["extra"]["comparisons"]
    assert float(cells[("w2sd", "MPS")]["ours"]) == pytest.approx(pair["w2sd_vs_strong"]["preference"]["w2sd"])
    assert results["metrics"]["W2SD (eval_t5)"]["PickScore paper"] == 21.8053
    gallery = Image.open(run / "gallery.png")
    assert gallery.height == LABEL_HEIGHT + n * 32  # one 32-px row per prompt (n < gallery.rows)
    page = (run / "gallery.html").read_text()
    assert page.count("<img ") == n * len(METHODS) and "pickscore" in page and "a fluffy" not in page
    assert list((run / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_shards_merge_only_when_complete(tiny, tmp_path, compose_config) -> None:
    run, overrides = tmp_path / "table", table_5_overrides(tiny, 2)
    run_experiment(compose_config([*overrides, "shards=2", "shard=0"]), run)
    assert sorted(images(run)) == [f"eval_t5/gen/{m}/00000.png" for m in sorted(METHODS)]  # prompt 0 only
    with pytest.raises(ConfigError, match=r"shard\(s\) 1 of 2 not complete") as err:
        run_experiment(compose_config([*overrides, "shards=2"]), run)
    assert len(str(err.value).splitlines()) == 1
    run_experiment(compose_config([*overrides, "shards=2", "shard=1"]), run)
    before = images(run)
    assert len(before) == 2 * len(METHODS)
    run_experiment(compose_config([*overrides, "shards=2"]), run)
    assert images(run) == before and (run / "table.md").is_file()
    assert {int(r["index"]) for r in read_csv(run / "eval_t5" / "eval" / "scores.csv")} == {0, 1}


def test_dry_run_lists_every_weight_and_the_cost(compose_config, capsys, tmp_path) -> None:
    bench = tmp_path / "gpu_smoke"
    bench.mkdir()
    (bench / "h200.json").write_text(json.dumps([{"pipeline": "StableDiffusionPipeline", "seconds_per_nfe": 0.1},
                                                 {"pipeline": "StableDiffusionXLPipeline", "seconds_per_nfe": 0.5}]))
    cfg = compose_config(["experiment=table_10", "dry_run=true", f"benchmarks={bench}", "paths.prompts_dir=/nowhere"])
    with pytest.raises(SystemExit) as stop:
        run_experiment(cfg, tmp_path / "run")
    assert stop.value.code == 0 and not (tmp_path / "run").exists()
    out = capsys.readouterr().out
    for block in ("eval_t10_sd15", "eval_t10_sdxl"):
        for key in ("gap.models.base:", "gap.models.base.loras.style:", "prompts.file:"):
            assert f"MISSING  blocks.{block}.set.{key}" in out
    # issue 20: without the prompts file the number of images is not known (it was reported as 0)
    assert "total: unknown (prompts file missing for eval_t10_sd15, eval_t10_sdxl)" in out
    assert "GPU-hours: unknown (prompts file missing)" in out and " 0 images" not in out

    prompts = tmp_path / "prompts"  # 120 captions, of which the protocol's limit keeps the first 100
    prompts.mkdir()
    (prompts / "pickapic_test_captions.csv").write_text("caption\n" + "".join(f"a photo {i}\n" for i in range(120)))
    cfg = compose_config(["experiment=table_10", "dry_run=true", f"benchmarks={bench}", f"paths.prompts_dir={prompts}"])
    with pytest.raises(SystemExit):
        run_experiment(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    for key in ("hps.checkpoint", "hps.base", "pickscore.model", "pickscore.processor", "aesthetic.clip",
                "aesthetic.head"):
        assert f"evaluate.scorers.{key}:" in out
    # Pick-a-Pic protocol: 100 prompts × (base, strong, w2sd) × 2 blocks; W2SD at T = 50, λ = 49 costs T + 2λ = 148
    assert "600 images" in out and "w2sd 148" in out and "49,600 denoiser calls" in out
    assert f"≈ {(24_800 * 0.1 + 24_800 * 0.5) / 3600:.2f} on one device" in out


def test_dry_run_without_a_benchmark_says_gpu_hours_are_unknown(compose_config, capsys, tmp_path) -> None:
    cfg = compose_config(["experiment=table_3", "dry_run=true", f"benchmarks={tmp_path}"])
    with pytest.raises(SystemExit):
        run_experiment(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert "GPU-hours: unknown — no GPU benchmark for DiTPipeline" in out
    assert "MISSING  evaluate.distribution.reference_dir" in out and "blocks.eval_t3.set.gap.models.base.moe" in out


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("table_*.yaml")))
def test_every_table_config_builds_its_blocks_and_dry_runs(name, compose_config, capsys, tmp_path) -> None:
    with pytest.raises(SystemExit) as stop:
        run_experiment(compose_config([f"experiment={name}", "dry_run=true"]), tmp_path / "run")
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "denoiser calls per image" in out and "total:" in out


@pytest.mark.parametrize("overrides, message", [
    (["shards=2", "shard=2"], "shard=2 must be in"),
    (["paper_table=2"], "blocks.eval_t2.preset is not set"),
    (["paper_table=7"], "paper_table='7' is not a paper table"),
    (["++blocks.eval_t5.methods={w2sd: w2sd_tuned}"], r"methods \['w2sd_tuned'\] are not in preset"),
])
def test_bad_table_settings_fail_in_one_line(compose_config, tmp_path, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        run_experiment(compose_config(["experiment=table_5", *overrides]), tmp_path / "run")


def test_gallery_rows_are_bounded_evenly_spread_and_stable() -> None:
    assert gallery_indices(list(range(100)), 8) == [0, 14, 28, 42, 57, 71, 85, 99]  # round(k·99/7)
    assert gallery_indices([3, 5], 8) == [3, 5]


def test_fid_against_npz_statistics_equals_fid_against_the_images_they_summarise(tmp_path) -> None:
    reference = [pattern_image(s, 16) for s in range(12)]
    generated = [pattern_image(100 + s, 16) for s in range(7)]
    features = np.stack([TinyFeatures()(torch.from_numpy(np.asarray(im)).permute(2, 0, 1)[None]).numpy()[0]
                         for im in reference]).astype(np.float64)
    np.savez(tmp_path / "ref.npz", mu=features.mean(0), sigma=np.cov(features, rowvar=False))
    expected = fid(generated, reference, feature=TinyFeatures(), batch_size=5)
    assert fid_from_statistics(generated, tmp_path / "ref.npz", TinyFeatures(), batch_size=5) == \
        pytest.approx(expected, rel=1e-6)
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(ConfigError, match="3-d statistics but the extractor gives 6-d"):
        fid_from_statistics(generated, tmp_path / "bad.npz", TinyFeatures())


def test_a_video_tile_shows_its_first_middle_and_last_frame(tmp_path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    strip = Image.new("RGB", (8 * len(colours), 8))
    for k, colour in enumerate(colours):
        strip.paste(Image.new("RGB", (8, 8), colour), (8 * k, 0))
    strip.save(tmp_path / "video.png")
    shown = tile(tmp_path / "video.png", len(colours), 8)
    assert shown.size == (24, 8)
    assert [shown.getpixel((8 * k + 4, 4)) for k in range(3)] == [colours[0], colours[2], colours[4]]


def test_gpu_hours_from_the_gpu_smoke_benchmark(compose_config, capsys, tmp_path) -> None:
    def smoke(tiny: bool, wall: float) -> dict:  # benchmarks/gpu_smoke.py's results layout
        return {"experiment": "gpu_smoke", "config": {"tiny": tiny}, "metrics": {"gaps": {"lora_released": {
            "methods": {"base": {"nfe": 4, "wall_time_s": wall}, "w2sd": {"nfe": 10, "wall_time_s": 6.0 * wall}}}}}}

    (tmp_path / "cpu-tiny.json").write_text(json.dumps(smoke(True, 100.0)))  # tiny nets: not a GPU benchmark
    (tmp_path / "h200.json").write_text(json.dumps(smoke(False, 1.0)))      # 7 s / 14 calls = 0.5 s per call
    cfg = compose_config(["experiment=table_15", "dry_run=true", f"benchmarks={tmp_path}", "devices=2"])
    with pytest.raises(SystemExit):
        run_experiment(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    calls = 100 * (50 + 50 + 2 * 50 + (50 + 2 * 49))  # base, strong (DDIM T), autoguidance 2T, W2SD T + 2λ
    assert f"{calls:,} denoiser calls" in out
    assert f"≈ {calls * 0.5 / 3600:.2f} on one device" in out and f"≈ {calls * 0.5 / 3600 / 2:.2f} h wall" in out


# -- the gallery as a person sees it (issue 20): a real headless browser opens a table run's gallery.html -------------
ARTIFACTS = Path(os.environ.get("W2SD_TEST_ARTIFACTS", ROOT / ".test-artifacts"))
# Debian's chromium, as .ci/run installs it; flags keep it from reaching the network or reusing a profile
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the page (same folder, so every relative link resolves as in the original): once the page
# has loaded, it records each image's resolved address and whether it decoded into the <body> attributes.
PROBE = """<script>window.addEventListener("load", () => {
  const shown = [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}));
  document.body.setAttribute("data-images", JSON.stringify(shown));
});</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    binary = next((b for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    assert binary, "Debian's chromium is not installed: `apt-get install -y chromium` (.ci/run does this)"
    return subprocess.run([binary, *CHROMIUM, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120, check=True)


class GalleryCells(HTMLParser):
    """(prompt index, image src, scores text) of every image cell of gallery.html's table."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[int, str, str]] = []
        self.index, self.src, self.scores, self.in_scores, self.in_prompt, self.prompt_text = None, None, "", False, \
            False, ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "td" and attrs.get("class") == "p":
            self.in_prompt, self.prompt_text = True, ""
        elif tag == "img":
            self.src = attrs["src"]
        elif tag == "div" and attrs.get("class") == "s":
            self.in_scores, self.scores = True, ""
        elif tag == "br" and self.in_scores:
            self.scores += "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.in_prompt:
            self.in_prompt = False
            self.index = int(self.prompt_text.split("#", 1)[1].split()[0])
        elif tag == "div" and self.in_scores:
            self.in_scores = False
            self.cells.append((self.index, self.src, self.scores))

    def handle_data(self, data: str) -> None:
        if self.in_prompt:
            self.prompt_text += data
        elif self.in_scores:
            self.scores += data


@pytest.mark.slow
def test_gallery_opens_in_a_real_browser_with_every_image_and_the_scores_of_scores_csv(tiny, tmp_path,
                                                                                       compose_config) -> None:
    n, run = 2, tmp_path / "table"
    run_experiment(compose_config(table_5_overrides(tiny, n)), run)
    page = run / "gallery.html"
    probe = run / ".gallery-probe.html"
    probe.write_text(page.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    dom = chromium("--allow-file-access-from-files", "--window-size=1600,4000", "--virtual-time-budget=10000",
                   "--dump-dom", probe.as_uri(), profile=tmp_path / "profile-1").stdout
    probe.unlink()
    shown = json.loads(html_module.unescape(re.search(r'data-images="([^"]*)"', dom).group(1)))
    assert len(shown) == n * len(METHODS)
    assert [s["src"] for s in shown if not s["ok"]] == []  # every image loads
    for s in shown:  # and lives inside the run folder, so the folder can be copied anywhere
        assert Path(urllib.parse.unquote(urllib.parse.urlparse(s["src"]).path)).resolve().is_relative_to(run)

    scores = {(r["method"], int(r["index"])): r for r in read_csv(run / "eval_t5" / "eval" / "scores.csv")}
    parser = GalleryCells()
    parser.feed(dom)
    assert len(parser.cells) == n * len(METHODS)
    for index, src, text in parser.cells:
        method = Path(src).parent.name  # eval_t5/gen/<method>/<image>.png
        row = scores[(method, index)]
        expected = [f"{k} {float(v):.4f}" for k, v in row.items() if k not in ("method", "index", "seed", "prompt",
                                                                                  "path")]
        assert text.split("\n") == expected, (method, index)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "gallery.png"
    chromium("--window-size=1200,900", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile-2")
    assert Image.open(shot).size == (1200, 900)
