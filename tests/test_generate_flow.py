# The Hydra runner on flow presets: offline dry runs of every preset, a tiny FLUX.1 run end to end, bad input.
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flow_fixtures as FF  # noqa: E402
import pipeline_fixtures as F  # noqa: E402
from in_process import run_here  # noqa: E402

from w2sd.runner import build_experiment, run_experiment  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FLOW_PRESETS = ("flux_guidance", "flux_weights", "flux_cfg", "flux_lora", "flux_prompt_geneval", "sd35_cfg",
                "sd35_weights", "wan_cfg", "wan_weights")


@pytest.mark.slow
def test_every_flow_preset_dry_run_names_weights_cost_and_memory_offline(tmp_path, capsys, monkeypatch) -> None:
    for preset in FLOW_PRESETS:
        run_dir = tmp_path / preset
        code, out, err = run_here([f"experiment={preset}", "dry_run=true", "logger=none",
                                   f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
        assert code == 0, err
        assert "MISSING  gap.models." in out and "HF_HUB_OFFLINE=1" in out  # no weights here, nothing downloaded
        assert "w2sd: NFE " in out and "transformer rows" in out and "GB in bfloat16" in out
        assert not run_dir.exists()
    # two 12B FLUX.1 transformers do not fit a 24 GB card in bf16: the report names the offload
    code, out, _ = run_here(["experiment=flux_weights", "dry_run=true", "logger=none",
                             f"hydra.run.dir={tmp_path / 'fw'}"], capsys, monkeypatch)
    assert "w2sd: NFE 82, transformer rows 82" in out  # T + 2λ at T = 28, λ = 27, no CFG rows
    assert "strong + weak together: 67.5 GB on a 24 GB device — does NOT fit" in out
    assert "offload: set gap.models.<name>.offload=model" in out


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_flux")
    paths = {"dev": root / "dev", "schnell": root / "schnell", "other_vae": root / "other_vae", "sdxl": root / "sdxl"}
    FF.flux_pipeline(0, text=True).save_pretrained(paths["dev"])
    FF.flux_pipeline(1, FF.FLUX_SCHNELL, text=True).save_pretrained(paths["schnell"])
    other = FF.flux_pipeline(2, text=True)
    other.vae.register_to_config(shift_factor=0.0)
    other.save_pretrained(paths["other_vae"])
    F.sdxl_pipeline(0).save_pretrained(paths["sdxl"])
    with (root / "prompts.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["prompt"], ["a red cat"], ["a dog"]])
    return {**paths, "prompts": root / "prompts.csv"}


def flux_overrides(preset: str, tiny: dict, run_dir: Path, *extra: str) -> list[str]:
    models = {"flux_guidance": [f"gap.models.base.path={tiny['dev']}"],
              "flux_weights": [f"gap.models.strong.path={tiny['dev']}", f"gap.models.weak.path={tiny['schnell']}"]}
    return [f"experiment={preset}", "logger=none", f"prompts.file={tiny['prompts']}", "prompts.column=prompt",
            "prompts.limit=1", "pipeline.height=32", "pipeline.width=32", "sampler.T=2", "sampler.lam=1",
            "gap.models.base.dtype=float32" if preset == "flux_guidance" else "gap.models.strong.dtype=float32",
            f"hydra.run.dir={run_dir}", *models[preset], *extra]


@pytest.mark.slow
def test_flux_guidance_preset_runs_end_to_end_and_its_strong_image_is_the_flux_pipelines(tiny_flux, tmp_path,
                                                                                          compose_config) -> None:
    from diffusers import FluxPipeline

    from w2sd.pipelines.latents import to_uint8

    run_dir = tmp_path / "run"
    results = run_experiment(compose_config(flux_overrides("flux_guidance", tiny_flux, run_dir)), run_dir)
    assert results["nfe"] == {"weak": 2, "strong": 2, "w2sd": 2 + 2 * 1, "autoguidance": 4}
    with (run_dir / "manifest.csv").open(newline="") as handle:
        assert {r["method"] for r in csv.DictReader(handle)} == {"weak", "strong", "w2sd", "autoguidance"}
    pipe = FluxPipeline.from_pretrained(tiny_flux["dev"])
    pipe.set_progress_bar_config(disable=True)
    ref = pipe("a red cat", guidance_scale=3.5, num_inference_steps=2, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0)).images  # sample 0 has seed 0
    png = np.asarray(Image.open(run_dir / "strong/00000.png")).astype(int)
    assert np.abs(to_uint8(ref)[0].astype(int) - png).max() <= 1
    assert np.abs(np.asarray(Image.open(run_dir / "w2sd/00000.png")).astype(int) - png).mean() > 0.1


BAD = {
    "guidance on a checkpoint without guidance_embeds": (
        "flux_guidance", ["gap.models.base.path={schnell}"], "has guidance_embeds false"),
    "flow pipe paired with a DDPM pipe": (
        "flux_weights", ["gap.models.weak.path={sdxl}", "gap.models.weak.pipeline=StableDiffusionXLPipeline"],
        "is a DDPM pipeline"),
    "mismatched latent spaces": ("flux_weights", ["gap.models.weak.path={other_vae}"],
                                 "vae.shift_factor 0.1159 vs 0.0"),
    "guidance on SD3": ("flux_guidance", ["gap.models.base.pipeline=StableDiffusion3Pipeline"],
                        "is Flux's guidance embedding"),
    "official inversion": ("flux_guidance", ["sampler.inversion=official"], "inversion=official"),
    "lam >= T": ("flux_guidance", ["sampler.lam=2"], "sampler.lam=2 must be in \\[0, 1\\]"),
    "unknown time shift": ("flux_guidance", [], "time_shift_type='cubic' is not one of"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_flow_input_fails_in_validate_with_one_line_and_writes_nothing(case, tiny_flux, tmp_path,
                                                                          compose_config) -> None:
    preset, extra, message = BAD[case]
    if case == "unknown time shift":  # a checkpoint folder whose scheduler config names an option we do not know
        folder = tmp_path / "odd"
        FF.flux_pipeline(0).save_pretrained(folder)
        config = folder / "scheduler" / "scheduler_config.json"
        config.write_text(config.read_text().replace('"time_shift_type": "exponential"', '"time_shift_type": "cubic"'))
        extra = [f"gap.models.base.path={folder}"]
    run_dir = tmp_path / "run"
    cfg = compose_config(flux_overrides(preset, tiny_flux, run_dir, *(e.format(**tiny_flux) for e in extra)))
    with pytest.raises(ConfigError, match=message) as info:
        build_experiment(cfg).validate()
    assert "\n" not in str(info.value)
    assert not run_dir.exists()


def test_dry_run_counts_parameters_from_the_checkpoints_safetensors_headers(tiny_flux, tmp_path, capsys,
                                                                         monkeypatch) -> None:
    from diffusers import FluxPipeline

    from w2sd.pipelines.memory import component_parameters

    counts, source = component_parameters({"path": str(tiny_flux["dev"])})
    pipe = FluxPipeline.from_pretrained(tiny_flux["dev"])
    assert source == "checkpoint"
    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        assert counts[name] * 1e9 == pytest.approx(sum(p.numel() for p in getattr(pipe, name).parameters()))
    code, out, _ = run_here(["experiment=flux_guidance", "dry_run=true", "logger=none", f"hydra.run.dir={tmp_path}/r",
                             f"gap.models.base.path={tiny_flux['dev']}"], capsys, monkeypatch)
    assert code == 0 and f"found    gap.models.base: {tiny_flux['dev']}" in out
    assert "; checkpoint)" in out and "— fits" in out  # a few MB of tiny weights fit the 24 GB card
