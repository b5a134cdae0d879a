# The GPU smoke script's --tiny mode on the CPU: every pipeline kind runs its gap's methods, λ = 0 is diffusers' DDIM.
import json

import pytest

from benchmarks.gpu_smoke import T, gap_config, main, preset_gap_config

# one gap per pipeline kind (SDXL + LoRA, ControlNet, IP-Adapter, DiT-MoE, AnimateDiff-SDXL); the GPU run does all
GAPS = ["lora_released", "controlnet", "ip_adapter", "moe", "video"]


def test_tiny_smoke_run_is_finite_counts_nfe_and_matches_diffusers_at_lambda_zero(tmp_path) -> None:
    out = tmp_path / "smoke.json"
    main(["--tiny", "--gaps", *GAPS, "--flow", "--out", str(out)])
    metrics = json.loads(out.read_text())["metrics"]
    for gap in GAPS:
        methods = metrics["gaps"][gap]["methods"]
        assert set(methods) == set(gap_config("weights_cfg" if gap == "video" else gap)["methods"])
        for name, row in methods.items():
            assert row["finite"], (gap, name)
            assert row["nfe"] == {"w2sd": T + 2 * (T - 1), "autoguidance": 2 * T}.get(name, T)
        assert metrics["lambda_zero_max_abs_diff"][gap] <= 1e-4
    assert metrics["devices"]["model_cpu_offload"]["max_abs_diff"] == 0.0


@pytest.mark.slow
def test_tiny_flow_case_runs_the_flux_guidance_preset_and_matches_the_pipeline_at_lambda_zero(tmp_path) -> None:
    out = tmp_path / "smoke.json"
    main(["--tiny", "--gaps", "--flow", "flux_guidance", "--out", str(out)])
    metrics = json.loads(out.read_text())["metrics"]
    methods = metrics["gaps"]["flow:flux_guidance"]["methods"]
    assert set(methods) == set(preset_gap_config("flux_guidance")["methods"])
    for name, row in methods.items():
        assert row["finite"], name
        assert row["nfe"] == {"w2sd": T + 2 * (T - 1), "autoguidance": 2 * T}.get(name, T)
    assert metrics["lambda_zero_max_abs_diff"]["flow:flux_guidance"] <= 1e-4
