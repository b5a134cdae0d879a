# Cost of W2SD vs standard sampling with a LoRA pair: NFE, UNet batch-rows, wall and CPU time (paper.md §6).
"""`python -m benchmarks.bench_overhead [--T 50] [--repeats 3]` → results/bench_overhead/results.json (tiny SDXL,
32×32 images); `--pipeline sd15 --T 10 --repeats 1 --out results/bench_sd15_cpu/results.json`: the real SD1.5 UNet
architecture (its Hub config, random weights, ~3.5 GB in float32) on 64×64 latents, where the UNet dominates and
wall(W2SD)/wall(standard) should approach the UNet-row ratio. `--table` prints the docs table of the stored result
files. `--pipeline flux --T 10 --repeats 3 --out results/bench_flux_cpu/results.json`: a flow row, FLUX.1-dev's
transformer at its real width (3072, its Hub config, random weights) with one double and one single block, guidance
gap 3.5 vs 1.0 (every call one row, so the call ratio is the row ratio), 128×128 images (64 packed image tokens + 64
text tokens); `--pipeline flux_tiny` is the tiny test FLUX.1-dev.

Configuration: the paper's LoRA pair (App. B.1): reflection legs LoRA 0.8 / −1.5 at CFG 1, main step LoRA 0.8 at
CFG 5.5, λ = T − 1. Rows are counted by a forward hook on the UNet (one row = one latent through the network).
`released_code` re-counts the official implementation's schedule for the same config (paper.md §1.4): it runs the
batch-2 CFG pass for every call whose guidance scale is not negative, including the scale-1 legs."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import flow_fixtures as FF  # noqa: E402
import pipeline_fixtures as F  # noqa: E402

from w2sd.pipelines import ModelSetting, PipelineDenoiser  # noqa: E402
from w2sd.pipelines.encoding import encode  # noqa: E402
from w2sd.pipelines.flow import FlowDenoiser, encode_flow, flow_schedule, noise_shape, packer  # noqa: E402
from w2sd.pipelines.latents import initial_noise, latent_shape  # noqa: E402
from w2sd.pipelines.state import Switch  # noqa: E402
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


def tiny_sdxl() -> tuple[object, int]:
    return F.sdxl_pipeline(0), F.SIZE


def real_sd15() -> tuple[object, int]:
    """SD1.5's real UNet (tests/fixtures/hub_configs) with random weights; a 2-layer text encoder of its real width
    (768, the UNet's cross_attention_dim) and the tiny VAE, which only sets the 8× latent factor here (no decode)."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(F.hub_config(F.SD15, "unet_config.json"))
    config = F.text_config(F.SD15)
    config.hidden_size, config.intermediate_size, config.num_attention_heads = 768, 3072, 12
    vae = AutoencoderKL.from_config({**F.hub_config(F.SD15, "vae_config.json"), "block_out_channels": (8,) * 4,
                                     "norm_num_groups": 8, "layers_per_block": 1})
    pipe = StableDiffusionPipeline(unet=unet.eval(), vae=vae, text_encoder=CLIPTextModel(config).eval(),
                                   tokenizer=F.tokenizer(), scheduler=F.hub_scheduler(F.SD15), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return pipe, 512


def flux_width() -> tuple[object, int]:
    """FLUX.1-dev's transformer config (3072 wide, 4096-dim text, guidance embedding) cut to one double and one
    single block, random weights; a VAE of 4 narrow levels only sets the 8× latent factor (no decode)."""
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel.from_config({**F.hub_config(FF.FLUX_DEV, "transformer_config.json"),
                                                      "num_layers": 1, "num_single_layers": 1}).eval()
    vae = AutoencoderKL.from_config({**F.hub_config(FF.FLUX_DEV, "vae_config.json"), "block_out_channels": (8,) * 4,
                                     "norm_num_groups": 8, "layers_per_block": 1})
    pipe = FluxPipeline(transformer=transformer, vae=vae, scheduler=F.hub_scheduler(FF.FLUX_DEV), text_encoder=None,
                        tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    return pipe, 128


def tiny_flux() -> tuple[object, int]:
    return FF.flux_pipeline(0), FF.SIZE


PIPELINES = {"tiny": (tiny_sdxl, "tiny SDXL + LoRA, 32x32"),
             "sd15": (real_sd15, "real SD1.5 UNet (random weights) + LoRA, 512x512 (64x64 latents), batch 1")}
FLOW_PIPELINES = {"flux": (flux_width, "Flux-width transformer (random weights, 1 double + 1 single block), guidance "
                                       "3.5 vs 1.0, 128x128 (64 + 64 tokens), batch 1"),
                  "flux_tiny": (tiny_flux, "tiny FLUX.1-dev, guidance 3.5 vs 1.0, 32x32")}
FLOW_SETTINGS = {"strong": ModelSetting(guidance=3.5), "weak": ModelSetting(guidance=1.0)}


def measure(T: int, repeats: int, pipeline: str = "tiny") -> dict:
    pipe, size = PIPELINES[pipeline][0]()
    F.add_random_lora(pipe.unet, "style", seed=3)
    rows: list[int] = []
    pipe.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    switch = Switch()  # one memoised switch for all legs, as w2sd.pipelines.generation uses: LoRA set only on change
    models = {name: PipelineDenoiser(pipe, s, encode(pipe, s, ["a cat"], height=size, width=size, switch=switch),
                                     name=name, switch=switch)
              for name, s in SETTINGS.items()}
    schedule = schedule_from_diffusers(dict(pipe.scheduler.config), T)
    x, _ = initial_noise(pipe, [0], latent_shape(pipe, size, size))
    runs = {"standard": lambda: sample_ddim(models["main"], x, schedule),
            "w2sd": lambda: sample_w2sd(models["strong_leg"], models["weak_leg"], x, schedule,
                                        final=models["main"])}
    for model in models.values():  # warm-up: the first call of a shape pays one-off kernel setup
        model(x, schedule.timesteps[0])
    results = {name: {"wall_time_s": float("inf"), "cpu_time_s": float("inf")} for name in runs}
    for _ in range(repeats):  # interleaved, minimum kept: the machine is shared, the minimum is the least disturbed
        for name, run in runs.items():
            rows.clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            out = run()
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            results[name].update(nfe=out.nfe, unet_rows=sum(rows), wall_time_s=min(wall, results[name]["wall_time_s"]),
                                 cpu_time_s=min(cpu, results[name]["cpu_time_s"]))
    return results


def measure_flow(T: int, repeats: int, pipeline: str = "flux_tiny") -> dict:
    """Standard Euler sampling (guidance 3.5) against W2SD with the guidance gap on a Flux pipeline, through the
    generation path's own pieces (encode_flow, FlowDenoiser, the pipeline's σ grid): calls, rows, wall and CPU time."""
    pipe, size = FLOW_PIPELINES[pipeline][0]()
    config = pipe.transformer.config
    gen = torch.Generator().manual_seed(0)
    embeds = {"prompt_embeds": torch.randn(1, 64, config.joint_attention_dim, generator=gen),
              "pooled_prompt_embeds": torch.randn(1, config.pooled_projection_dim, generator=gen)}
    rows: list[int] = []
    pipe.transformer.register_forward_pre_hook(lambda m, a, k: rows.append(k["hidden_states"].shape[0]),
                                               with_kwargs=True)
    models = {name: FlowDenoiser(pipe, s, encode_flow(pipe, s, prompt_embeds=embeds, height=size, width=size),
                                 name=name) for name, s in FLOW_SETTINGS.items()}
    x, _ = initial_noise(pipe, [0], noise_shape(pipe, size, size))
    x = packer(pipe)(x)
    schedule = flow_schedule(pipe, T, x)
    runs = {"standard": lambda: sample_ddim(models["strong"], x, schedule),
            "w2sd": lambda: sample_w2sd(models["strong"], models["weak"], x, schedule)}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x, schedule.timesteps[0])
        results = {name: {"wall_time_s": float("inf"), "cpu_time_s": float("inf")} for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                rows.clear()
                start, start_cpu = time.perf_counter(), time.process_time()
                out = run()
                wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
                results[name].update(nfe=out.nfe, unet_rows=sum(rows),
                                     wall_time_s=min(wall, results[name]["wall_time_s"]),
                                     cpu_time_s=min(cpu, results[name]["cpu_time_s"]))
    return results


def summarise(measured: dict, released: dict) -> dict:
    std, w2 = measured["standard"], measured["w2sd"]
    wall_ratio = w2["wall_time_s"] / std["wall_time_s"]
    return {"wall_ratio": wall_ratio, "nfe_ratio": w2["nfe"] / std["nfe"],
            "overhead_per_nfe": wall_ratio / (w2["nfe"] / std["nfe"]),
            "overhead_per_row": wall_ratio / (w2["unet_rows"] / std["unet_rows"]),
            "cpu_overhead_per_row": (w2["cpu_time_s"] / std["cpu_time_s"]) / (w2["unet_rows"] / std["unet_rows"]),
            "released_rows_over_ours": released["unet_rows"] / w2["unet_rows"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_overhead", description=__doc__)
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline", choices=sorted(PIPELINES) + sorted(FLOW_PIPELINES), default="tiny")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_overhead" / "results.json")
    parser.add_argument("--table", action="store_true", help="print the docs table of both stored result files")
    args = parser.parse_args(argv)
    if args.table:
        print(docs_table())
        return {}
    torch.manual_seed(0)
    lam = args.T - 1
    flow = args.pipeline in FLOW_PIPELINES
    if flow:  # a flow row: the guidance gap (no LoRA, no CFG rows); the released code has no flow pipeline
        measured = measure_flow(args.T, args.repeats, args.pipeline)
        summary = summarise(measured, {"unet_rows": measured["w2sd"]["unet_rows"]})
        summary.pop("released_rows_over_ours")
        metrics = measured
        settings = {n: {"guidance": s.guidance, "cfg": s.cfg} for n, s in FLOW_SETTINGS.items()}
    else:
        measured = measure(args.T, args.repeats, args.pipeline)
        released = released_code_rows(args.T, lam, {n: s.cfg for n, s in SETTINGS.items()})
        summary = summarise(measured, released)
        metrics = {**measured, "released_code": {**released, "wall_time_s": None, "cpu_time_s": None}}
        settings = {n: {"cfg": s.cfg, "lora": dict(s.lora)} for n, s in SETTINGS.items()}
    label = (FLOW_PIPELINES if flow else PIPELINES)[args.pipeline][1]
    results = {"schema_version": RESULTS_SCHEMA_VERSION, "experiment": args.out.parent.name,
               "config": {"T": args.T, "lam": lam, "repeats": args.repeats, "pipeline": label, "settings": settings},
               "metrics": metrics, "extra": {"summary": summary},
               "environment": {"python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "machine": platform.machine()}}
    atomic_write_json(args.out, results)
    for name, row in metrics.items():
        wall = "-" if row["wall_time_s"] is None else f"{row['wall_time_s']:.3f} s"
        print(f"{name:14s} nfe={row['nfe']:4d} unet_rows={row['unet_rows']:4d} wall={wall}")
    released_line = "" if flow else f"; released-code rows / ours = {summary['released_rows_over_ours']:.3f}"
    print(f"wall(W2SD)/wall(standard) / NFE ratio = {summary['overhead_per_nfe']:.3f}; "
          f"per network row = {summary['overhead_per_row']:.3f}; CPU time per row = "
          f"{summary['cpu_overhead_per_row']:.3f}{released_line}  ({args.out})")
    return results


def docs_table(files: tuple[str, ...] = ("bench_overhead", "bench_sd15_cpu", "bench_flux_cpu"),
               results_root: Path = ROOT / "results") -> str:
    """Markdown rows of the stored runs (the `bench_cost` block of README.md and docs/real-checkpoints.md): per size,
    the time ratios next to the row ratio."""
    lines = ["| pipeline | T | rows standard → W2SD | row ratio | wall standard → W2SD (s) | wall ratio ÷ row ratio "
             "| CPU-time ratio ÷ row ratio |", "|---|---|---|---|---|---|---|"]
    for name in files:
        path = Path(results_root) / name / "results.json"
        if not path.is_file():  # a row not measured yet (e.g. the flow row before its first stored run)
            continue
        res = json.loads(path.read_text())
        std, w2, summary = res["metrics"]["standard"], res["metrics"]["w2sd"], res["extra"]["summary"]
        cpu = summary.get("cpu_overhead_per_row")
        lines.append(f"| {res['config']['pipeline']} | {res['config']['T']} | {std['unet_rows']} → {w2['unet_rows']} "
                     f"| {w2['unet_rows'] / std['unet_rows']:.2f} | {std['wall_time_s']:.1f} → {w2['wall_time_s']:.1f} "
                     f"| {summary['overhead_per_row']:.3f} | {'–' if cpu is None else f'{cpu:.3f}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
