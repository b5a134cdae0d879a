# Cost of W2SD vs standard sampling on a tiny SDXL+LoRA pipeline: NFE, UNet batch-rows, wall time (paper.md §6).
"""`python -m benchmarks.bench_overhead [--T 50] [--repeats 3]` → results/bench_overhead/results.json.

Configuration: the paper's LoRA pair (App. B.1): reflection legs LoRA 0.8 / −1.5 at CFG 1, main step LoRA 0.8 at
CFG 5.5, λ = T − 1. Rows are counted by a forward hook on the UNet (one row = one latent through the network).
`released_code` re-counts the official implementation's schedule for the same config (paper.md §1.4): it runs the
batch-2 CFG pass for every call whose guidance scale is not negative, including the scale-1 legs."""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import pipeline_fixtures as F  # noqa: E402

from w2sd.pipelines import ModelSetting, PipelineDenoiser  # noqa: E402
from w2sd.pipelines.encoding import encode  # noqa: E402
from w2sd.pipelines.latents import initial_noise, latent_shape  # noqa: E402
from w2sd.results import RESULTS_SCHEMA_VERSION, atomic_write_json  # noqa: E402
from w2sd.sampling import sample_ddim, sample_w2sd  # noqa: E402
from w2sd.schedule import schedule_from_diffusers  # noqa: E402

SETTINGS = {"strong_leg": ModelSetting(cfg=1.0, lora={"style": 0.8}),
            "weak_leg": ModelSetting(cfg=1.0, lora={"style": -1.5}),
            "main": ModelSetting(cfg=5.5, lora={"style": 0.8})}


def released_code_rows(T: int, lam: int, cfgs: dict[str, float], batch: int = 1) -> dict[str, int]:
    """NFE and UNet rows of the released w2sd_lora pipeline: CFG is skipped only for a negative scale."""
    rows = {name: batch * (1 if w < 0 else 2) for name, w in cfgs.items()}
    return {"nfe": T + 2 * lam, "unet_rows": T * rows["main"] + lam * (rows["strong_leg"] + rows["weak_leg"])}


def measure(T: int, repeats: int) -> dict:
    pipe = F.sdxl_pipeline(0)
    F.add_random_lora(pipe.unet, "style", seed=3)
    rows: list[int] = []
    pipe.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    models = {name: PipelineDenoiser(pipe, s, encode(pipe, s, ["a cat"], height=32, width=32), name=name)
              for name, s in SETTINGS.items()}
    schedule = schedule_from_diffusers(dict(pipe.scheduler.config), T)
    x, _ = initial_noise(pipe, [0], latent_shape(pipe, 32, 32))
    runs = {"standard": lambda: sample_ddim(models["main"], x, schedule),
            "w2sd": lambda: sample_w2sd(models["strong_leg"], models["weak_leg"], x, schedule,
                                        final=models["main"])}
    results = {name: {"wall_time_s": float("inf")} for name in runs}
    for _ in range(repeats):  # interleaved, minimum kept: the machine is shared, the minimum is the least disturbed
        for name, run in runs.items():
            rows.clear()
            start = time.perf_counter()
            out = run()
            wall = time.perf_counter() - start
            results[name].update(nfe=out.nfe, unet_rows=sum(rows),
                                 wall_time_s=min(wall, results[name]["wall_time_s"]))
    return results


def summarise(measured: dict, released: dict) -> dict:
    std, w2 = measured["standard"], measured["w2sd"]
    wall_ratio = w2["wall_time_s"] / std["wall_time_s"]
    return {"wall_ratio": wall_ratio, "nfe_ratio": w2["nfe"] / std["nfe"],
            "overhead_per_nfe": wall_ratio / (w2["nfe"] / std["nfe"]),
            "overhead_per_row": wall_ratio / (w2["unet_rows"] / std["unet_rows"]),
            "released_rows_over_ours": released["unet_rows"] / w2["unet_rows"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_overhead", description=__doc__)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_overhead" / "results.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    lam = args.T - 1
    measured = measure(args.T, args.repeats)
    released = released_code_rows(args.T, lam, {n: s.cfg for n, s in SETTINGS.items()})
    summary = summarise(measured, released)
    metrics = {**measured, "released_code": {**released, "wall_time_s": None}}
    results = {"schema_version": RESULTS_SCHEMA_VERSION, "experiment": "bench_overhead",
               "config": {"T": args.T, "lam": lam, "repeats": args.repeats, "pipeline": "tiny SDXL + LoRA, 32x32",
                          "settings": {n: {"cfg": s.cfg, "lora": dict(s.lora)} for n, s in SETTINGS.items()}},
               "metrics": metrics, "extra": {"summary": summary},
               "environment": {"python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "machine": platform.machine()}}
    atomic_write_json(args.out, results)
    for name, row in metrics.items():
        wall = "-" if row["wall_time_s"] is None else f"{row['wall_time_s']:.3f} s"
        print(f"{name:14s} nfe={row['nfe']:4d} unet_rows={row['unet_rows']:4d} wall={wall}")
    print(f"wall(W2SD)/wall(standard) / NFE ratio = {summary['overhead_per_nfe']:.3f}; "
          f"per UNet row = {summary['overhead_per_row']:.3f}; "
          f"released-code rows / ours = {summary['released_rows_over_ours']:.3f}  ({args.out})")
    return results


if __name__ == "__main__":
    main()
