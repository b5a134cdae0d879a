# The generation experiment end to end on tiny saved pipelines: every preset, manifest contract, resume, bad input.
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402

from w2sd.runner import build_experiment, run_experiment  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

# preset → overrides pointing its models at the tiny folders (`{name}` = a path from save_tiny_models)
PRESETS = {
    "sd15_dreamshaper": ["gap.models.strong.path={sd15_b}", "gap.models.weak.path={sd15}"],
    "sdxl_juggernaut": ["gap.models.strong.path={sdxl_b}", "gap.models.weak.path={sdxl}"],
    "sdxl_lora_xlmoreart": ["gap.models.base.path={sdxl}", "gap.models.base.loras.style.path={sdxl_lora}"],
    "sd15_cfg": ["gap.models.base.path={sd15}"],
    "sdxl_cfg": ["gap.models.base.path={sdxl}"],
    "sdxl_prompt_geneval": ["gap.models.base.path={sdxl}"],
    "juggernaut_sdxl_cumulative": ["gap.models.strong.path={sdxl_b}", "gap.models.weak.path={sdxl}"],
    "controlnet": ["gap.models.base.path={sd15}", "gap.models.base.controlnet.path={controlnet}"],
    "ip_adapter": ["gap.models.base.path={sd15}", "gap.models.base.ip_adapter.path={ip_adapter}",
                   "gap.models.base.ip_adapter.weight_name=" + F.IP_ADAPTER_WEIGHTS],
    "dit_moe": ["gap.models.base.path={dit}", "gap.models.base.moe.path={moe}", "prompts.column=label"],
    "video_animatediff_sdxl": ["gap.models.strong.path={sdxl_b}", "gap.models.weak.path={sdxl}",
                               "gap.models.strong.motion_adapter.path={motion}",
                               "gap.models.weak.motion_adapter.path={motion}", "pipeline.num_frames=2"],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    paths = F.save_tiny_models(root)
    edges = np.zeros((32, 32, 3), np.uint8)
    edges[8:24, 15:17] = 255
    Image.fromarray(edges).save(root / "edges.png")
    edge_file = str(root / "edges.png")
    rows = [["prompt", "refined", "control_image", "label", "ip_adapter_image"],
            ["a red cat", "a red cat, detailed", edge_file, "1", edge_file], ["", "", "", "", ""],
            ["7", "a blue car at night", edge_file, "0", edge_file], ["a dog", "a dog, photo", "", "1", ""]]
    with (root / "prompts.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return {**paths, "prompts": root / "prompts.csv", "edges": root / "edges.png"}


def overrides(preset: str, tiny: dict, run_dir: Path, extra: tuple[str, ...] = (), prompts: int = 1) -> list[str]:
    """2 steps at 32×32 on `prompts` prompts (the CSV's second row is empty and must be skipped)."""
    return [f"experiment={preset}", "logger=none", f"prompts.file={tiny['prompts']}", "prompts.column=prompt",
            f"prompts.limit={prompts}", "pipeline.height=32", "pipeline.width=32", "sampler.T=2", "sampler.lam=1",
            f"hydra.run.dir={run_dir}", *(o.format(**tiny) for o in PRESETS[preset]), *extra]


def read_manifest(run_dir: Path) -> list[dict]:
    with (run_dir / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# the fast set covers SD1.5, SDXL + LoRA and DiT-MoE presets (ControlNet is covered fast in test_pipelines_adapters);
# every other preset runs with `-m slow`
FAST = {"sd15_cfg", "sdxl_lora_xlmoreart", "dit_moe", "ip_adapter"}


PRESET_PARAMS = [p if p in FAST else pytest.param(p, marks=pytest.mark.slow) for p in sorted(PRESETS)]


@pytest.mark.parametrize("preset", PRESET_PARAMS)
def test_preset_runs_end_to_end_and_writes_the_manifest_contract(preset, tiny, tmp_path, compose_config) -> None:
    run_dir = tmp_path / preset
    cfg = compose_config(overrides(preset, tiny, run_dir))
    results = run_experiment(cfg, run_dir)
    rows = read_manifest(run_dir)
    assert list(rows[0]) == ["method", "index", "seed", "prompt", "path", "frames"]
    methods = set(cfg.gap.methods)
    assert {"weak", "strong", "w2sd", "autoguidance"} <= methods  # every table carries the difference-guidance row
    assert {(r["method"], r["index"]) for r in rows} == {(m, "0") for m in methods}
    frames = 2 if preset.startswith("video") else 1
    for row in rows:
        image = Image.open(run_dir / row["path"])
        assert image.size == (32 * frames, 32) and int(row["frames"]) == frames
        assert row["seed"] == row["index"]  # seed = prompt index (base seed 0)
    assert results["config"]["prompts"]["name"] and results["config"]["prompts"]["file"] == str(tiny["prompts"])
    T, lam = cfg.sampler.T, cfg.sampler.lam
    assert results["nfe"]["w2sd"] == T + 2 * lam and results["nfe"]["strong"] == T
    assert results["nfe"]["autoguidance"] == 2 * T
    w2sd, strong = (np.asarray(Image.open(run_dir / f"{m}/00000.png"), dtype=float) for m in ("w2sd", "strong"))
    assert np.abs(w2sd - strong).mean() > 0.1  # the reflection changed the image (exact values: the sd15_cfg test)


def test_sd15_cfg_images_equal_diffusers_and_the_entry_point(tiny, tmp_path, compose_config) -> None:
    """The experiment's plumbing (settings, roles, seeds, decoding) against independent calls: the strong baseline
    is diffusers' own pipeline on the same x_T, W2SD and autoguidance are w2sd_generate with explicit settings."""
    from diffusers import StableDiffusionPipeline

    from w2sd.pipelines import w2sd_generate
    from w2sd.pipelines.latents import initial_noise, latent_shape, to_uint8

    run_dir = tmp_path / "run"
    run_experiment(compose_config(overrides("sd15_cfg", tiny, run_dir)), run_dir)
    png = {m: np.asarray(Image.open(run_dir / f"{m}/00000.png")).astype(int)
           for m in ("strong", "w2sd", "autoguidance")}
    pipe = StableDiffusionPipeline.from_pretrained(tiny["sd15"])
    pipe.set_progress_bar_config(disable=True)
    x, _ = initial_noise(pipe, [0], latent_shape(pipe, 32, 32))
    ref = F.ddim_twin(pipe)("a red cat", latents=x, num_inference_steps=2, guidance_scale=5.5, height=32, width=32,
               output_type="np").images
    assert np.abs(to_uint8(ref)[0].astype(int) - png["strong"]).max() <= 1  # float32 rounding of the DDIM step
    legs = {"strong": (pipe, {"cfg": 5.5}), "weak": (pipe, {"cfg": 0.0})}
    for method, spec in (("w2sd", "w2sd"), ("autoguidance", {"sampler": "autoguidance", "w": 1.0})):
        out = w2sd_generate(**legs, prompt="a red cat", method=spec, T=2, lam=1, seed=0, height=32, width=32,
                            output_type="np")
        np.testing.assert_array_equal(to_uint8(out.images)[0], png[method])


def test_resume_recomputes_only_missing_images(tiny, tmp_path, compose_config) -> None:
    run_dir = tmp_path / "resume"
    args = overrides("sd15_cfg", tiny, run_dir, prompts=2)
    run_experiment(compose_config(args), run_dir)
    assert [r["prompt"] for r in read_manifest(run_dir) if r["method"] == "w2sd"] == ["a red cat", "7"]
    first = {p: p.read_bytes() for p in run_dir.glob("*/*.png")}
    kept = run_dir / "strong" / "00000.png"
    mtime = kept.stat().st_mtime_ns
    (run_dir / "w2sd" / "00001.png").unlink()  # as if interrupted before this image was written
    run_experiment(compose_config(args), run_dir)
    assert kept.stat().st_mtime_ns == mtime  # not recomputed
    assert {p: p.read_bytes() for p in run_dir.glob("*/*.png")} == first  # the lost one is back, identical
    rows = read_manifest(run_dir)
    assert len(rows) == len({(r["method"], r["index"]) for r in rows}) == 8
    with pytest.raises(ConfigError, match="another config"):
        run_experiment(compose_config(args[:-1] + ["gap.settings.strong.cfg=3.0"] + args[-1:]), run_dir)


BAD_INPUTS = {
    "missing weights": (["gap.models.base.path=null", "gap.models.base.id=nobody/missing-model"],
                        "'nobody/missing-model' is not in the HF cache"),
    "missing path": (["gap.models.base.path=/nonexistent/sdxl"], "does not exist"),
    "unknown gap type": (["gap.type=texture"], "gap.type='texture' is not one of"),
    "lora not loaded": (["+gap.settings.strong.lora={{other: 0.5}}"], "does not load"),
    "lam >= T": (["sampler.lam=2"], "sampler.lam=2 must be in \\[0, 1\\]"),
    "empty prompt file": (["prompts.file={empty}"], "has no non-empty prompts"),
    "malformed prompt file": (["prompts.file={binary}"], "binary.csv line 2: a NUL byte"),
    "missing prompt column": (["prompts.column=caption"], "prompts.column='caption' is not a column"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_in_validate_with_one_line_and_writes_nothing(case, tiny, tmp_path, compose_config) -> None:
    extra, message = BAD_INPUTS[case]
    empty, binary = tmp_path / "empty.csv", tmp_path / "binary.csv"
    empty.write_text("prompt\n\n")
    binary.write_bytes(b"prompt\n\xff\xfe\x00bad\n")
    run_dir = tmp_path / "run"
    extra = [e.format(empty=empty, binary=binary) for e in extra]
    cfg = compose_config(overrides("sdxl_cfg", tiny, run_dir, tuple(extra)))
    with pytest.raises(ConfigError, match=message) as info:
        build_experiment(cfg).validate()
    assert "\n" not in str(info.value)
    assert not run_dir.exists()


def test_controlnet_gap_without_control_image_is_rejected(tiny, tmp_path, compose_config) -> None:
    cfg = compose_config(overrides("controlnet", tiny, tmp_path / "run", ("prompts.control_image_column=null",)))
    with pytest.raises(ConfigError, match="no control image"):
        build_experiment(cfg).validate()


@pytest.mark.parametrize("extra, prompts, message", [
    (("prompts.ip_adapter_image_column=null",), 1, "there is no IP-Adapter image"),
    (("pipeline.ip_adapter_image=/nonexistent/ref.png", "prompts.ip_adapter_image_column=null"), 1, "does not exist"),
    ((), 3, "prompts \\[2\\] have an empty 'ip_adapter_image' column"),  # the CSV's "a dog" row has no image
    (("gap.models.base.ip_adapter=null",), 1, "ip_adapter_scale needs gap.models.base.ip_adapter"),
])
def test_ip_adapter_gap_without_its_image_or_adapter_is_rejected(extra, prompts, message, tiny, tmp_path,
                                                                  compose_config) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_config(overrides("ip_adapter", tiny, run_dir, extra, prompts=prompts))
    with pytest.raises(ConfigError, match=message) as info:
        build_experiment(cfg).validate()
    assert "\n" not in str(info.value) and not run_dir.exists()


def test_released_code_lora_switch_changes_legs_and_inversion(tiny, tmp_path, compose_config) -> None:
    cfg = compose_config(overrides("sdxl_lora_xlmoreart", tiny, tmp_path / "run", ("gap=lora_released",)))
    assert cfg.gap.settings.strong_leg.lora.style == 1.5 and cfg.gap.settings.strong_leg.cfg == 5.5
    assert cfg.gap.methods.w2sd.inversion == "official" and cfg.gap.settings.weak_leg.cfg == 1.0
    build_experiment(cfg).validate()


def test_prompt_sharding_gives_every_pending_prompt_to_exactly_one_rank() -> None:
    """Trainer.predict under DDP uses Lightning's unrepeated sampler: disjoint shards, nothing padded or lost."""
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    from experiments.generate import PromptDataset
    from w2sd.pipelines.prompts import PromptItem

    dataset = PromptDataset([PromptItem(i, f"p{i}") for i in (0, 2, 3, 5, 8)])  # pending subset after a resume
    shards = [[dataset[j].index for j in UnrepeatedDistributedSampler(dataset, num_replicas=2, rank=r, shuffle=False)]
              for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == [0, 2, 3, 5, 8] and not set(shards[0]) & set(shards[1])


@pytest.mark.slow
def test_ddp_two_processes_write_the_same_images_as_one(tiny, tmp_path, compose_config) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    threads = ("pipeline.cpu_threads=1",)  # CPU kernels round differently with other thread counts
    run_experiment(compose_config(overrides("sd15_cfg", tiny, one, threads, prompts=3)), one)
    ddp = (*threads, "pipeline.trainer.devices=2", "pipeline.trainer.strategy=ddp_spawn",
           "pipeline.trainer.accelerator=cpu")
    run_experiment(compose_config(overrides("sd15_cfg", tiny, two, ddp, prompts=3)), two)
    images_one = {p.relative_to(one): p.read_bytes() for p in one.glob("*/0*.png")}
    images_two = {p.relative_to(two): p.read_bytes() for p in two.glob("*/0*.png")}
    assert len(images_one) == 12 and images_one == images_two
    rows = read_manifest(two)
    assert len(rows) == len({(r["method"], r["index"]) for r in rows}) == 12
