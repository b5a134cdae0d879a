# The overhead benchmark counts real UNet rows and re-counts the released code's schedule correctly.
from benchmarks.bench_overhead import SETTINGS, measure, measure_flow, released_code_rows, summarise


def test_released_code_recount_runs_batch_two_cfg_even_at_scale_one() -> None:
    cfgs = {name: s.cfg for name, s in SETTINGS.items()}  # legs at CFG 1, main step at 5.5
    assert released_code_rows(50, 49, cfgs) == {"nfe": 148, "unet_rows": 50 * 2 + 49 * (2 + 2)}
    assert released_code_rows(50, 49, {"strong_leg": -1.0, "weak_leg": 1.0, "main": 5.5})["unet_rows"] == 100 + 49 * 3


def test_measured_rows_and_nfe_follow_single_branch_legs() -> None:
    measured = measure(T=3, repeats=1)
    assert measured["standard"]["nfe"] == 3 and measured["standard"]["unet_rows"] == 6
    assert measured["w2sd"]["nfe"] == 3 + 2 * 2 and measured["w2sd"]["unet_rows"] == 3 * 2 + 2 * (1 + 1)
    summary = summarise(measured, released_code_rows(3, 2, {n: s.cfg for n, s in SETTINGS.items()}))
    assert summary["released_rows_over_ours"] == (6 + 2 * 4) / 10


def test_flow_row_counts_one_transformer_row_per_call_of_the_guidance_gap() -> None:
    measured = measure_flow(T=3, repeats=1, pipeline="flux_tiny")
    assert measured["standard"]["nfe"] == measured["standard"]["unet_rows"] == 3
    assert measured["w2sd"]["nfe"] == measured["w2sd"]["unet_rows"] == 3 + 2 * 2
    assert all(row["cpu_time_s"] > 0 for row in measured.values())
