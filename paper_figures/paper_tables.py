# Paper-format Tables 1–6 and 8–15 with the paper's numbers (paper.md §4) beside ours from stored evaluate runs.
from __future__ import annotations

from pathlib import Path

from w2sd.report import format_value
from w2sd.results import load_results

PREF = "preference"  # our MPS stand-in: PickScore two-way softmax % (the MPS checkpoint is not public)
IMAGE_COLUMNS = [("HPS v2", "hps"), ("AES", "aesthetic"), ("PickScore", "pickscore"), ("MPS", PREF)]

# Rows the paper repeats verbatim across tables (same model, prompt set and scorers): HPS v2, AES, PickScore[, MPS].
SD15_PICKAPIC = [24.9558, 5.5003, 20.1368]
SDXL_PICKAPIC = [29.8701, 6.0939, 21.6487]
SD15_DRAWBENCH = [25.3601, 5.2023, 21.0519]
SDXL_DRAWBENCH = [28.5536, 5.4946, 22.2464]
XLMOREART_PICKAPIC = [32.8040, 6.1176, 22.3259, 48.2224]
W2SD_XLMOREART_PICKAPIC = [33.5959, 6.2252, 22.3644, 51.7770]
W2SD_SDXL_CFG_PICKAPIC = [31.2020, 6.0970, 21.7980, 56.0608]

Row = tuple[str, list[float | None], str]  # (label, paper values, our method)
# table → (caption, columns [(paper label, our metric)], blocks [(results name, rows)]). Ours comes from
# results/<results name>/results.json, written by `experiment=evaluate` on the matching generation run.
TABLES: dict[str, tuple[str, list[tuple[str, str]], list[tuple[str, list[Row]]]]] = {
    "1": ("Weight difference (full fine-tune), Pick-a-Pic", IMAGE_COLUMNS, [
        ("eval_t1_sd15", [("SD1.5 (weak)", [*SD15_PICKAPIC, None], "weak"),
                          ("DreamShaper (strong)", [30.1477, 6.1155, 21.5035, 46.8705], "strong"),
                          ("W2SD", [30.4924, 6.2478, 21.5727, 53.1304], "w2sd")]),
        ("eval_t1_sdxl", [("SDXL (weak)", [*SDXL_PICKAPIC, None], "weak"),
                          ("Juggernaut-XL (strong)", [31.6412, 5.9790, 22.1903, 45.7397], "strong"),
                          ("W2SD", [32.0992, 6.0712, 22.2434, 54.2634], "w2sd")])]),
    "2": ("Personalised LoRA (20 LoRAs)", [("DINO", "dino"), ("CLIP-I", "clip_i"), ("CLIP-T", "clip_t")], [
        ("eval_t2", [("SD1.5", [27.47, 52.08, 20.14], "weak"),
                     ("Personalized LoRA", [48.03, 64.37, 25.99], "strong"),
                     ("W2SD", [51.58, 68.04, 27.66], "w2sd")])]),
    "3": ("MoE routing (DiT-MoE-S, ImageNet 50K)", [("IS", "is"), ("FID", "fid"), ("AES", "aesthetic"),
                                                     ("HPS v2", "hps")], [
        ("eval_t3", [("DiT-MoE-S", [45.4437, 15.1032, 4.4755, 20.0486], "strong"),
                     ("W2SD", [55.5341, 9.1001, 4.5053, 22.3225], "w2sd")])]),
    "4": ("CFG difference (strong CFG 5.5, weak CFG 0), Pick-a-Pic", IMAGE_COLUMNS, [
        ("eval_t4_sd15", [("SD1.5", [*SD15_PICKAPIC, 42.1101], "strong"),
                          ("W2SD", [25.5069, 5.5073, 20.2443, 57.8903], "w2sd")]),
        ("eval_t4_sdxl", [("SDXL", [*SDXL_PICKAPIC, 43.9425], "strong"), ("W2SD", W2SD_SDXL_CFG_PICKAPIC, "w2sd")])]),
    "5": ("Prompt semantics (SDXL, GenEval prompts)", IMAGE_COLUMNS, [
        ("eval_t5", [("Raw prompt (weak)", [25.3897, 5.4454, 20.7144, None], "weak"),
                     ("Refined prompt (strong)", [28.5698, 5.7714, 21.6350, 45.7719], "strong"),
                     ("W2SD", [29.4023, 5.8812, 21.8053, 54.2275], "w2sd")])]),
    "6": ("Cumulative effects, Pick-a-Pic (baseline Juggernaut-XL)", [("HPS v2", "hps"),
                                                                    ("HPS v2 win rate %", "hps_win_rate")], [
        ("eval_t6", [("no difference", [31.6412, None], "strong"),
                     ("condition only", [32.8217, 84.0], "w2sd_condition"),
                     ("weight only", [32.0992, 76.0], "w2sd_weight"),
                     ("weight + condition", [32.9623, 90.0], "w2sd")])]),
    "8": ("Weight difference (full fine-tune), DrawBench", IMAGE_COLUMNS, [
        ("eval_t8_sd15", [("SD1.5", [*SD15_DRAWBENCH, None], "weak"),
                          ("DreamShaper", [28.7845, 5.7047, 21.8522, 47.8813], "strong"),
                          ("W2SD", [28.7901, 5.7847, 21.9057, 52.1192], "w2sd")]),
        ("eval_t8_sdxl", [("SDXL", [*SDXL_DRAWBENCH, None], "weak"),
                          ("Juggernaut-XL", [28.9085, 5.3455, 22.4906, 47.5648], "strong"),
                          ("W2SD", [29.3246, 5.4261, 22.5803, 52.4358], "w2sd")])]),
    "9": ("CFG difference, DrawBench", IMAGE_COLUMNS, [
        ("eval_t9_sd15", [("SD1.5", [*SD15_DRAWBENCH, 47.7075], "strong"),
                          ("W2SD", [25.8234, 5.2157, 21.2079, 52.2934], "w2sd")]),
        ("eval_t9_sdxl", [("SDXL", [*SDXL_DRAWBENCH, 40.9590], "strong"),
                          ("W2SD", [30.1426, 5.6600, 22.4434, 59.0415], "w2sd")])]),
    "10": ("Human-preference LoRA, Pick-a-Pic", IMAGE_COLUMNS, [
        ("eval_t10_sd15", [("SD1.5", [*SD15_PICKAPIC, None], "weak"),
                           ("Dpo-Lora", [25.5678, 5.5804, 20.3514, 44.2889], "strong"),
                           ("W2SD", [26.0825, 5.6567, 20.5096, 55.7106], "w2sd")]),
        ("eval_t10_sdxl", [("SDXL", [*SDXL_PICKAPIC, None], "weak"), ("xlMoreArtFullV1", XLMOREART_PICKAPIC, "strong"),
                           ("W2SD", W2SD_XLMOREART_PICKAPIC, "w2sd")])]),
    "11": ("Human-preference LoRA, DrawBench", IMAGE_COLUMNS, [
        ("eval_t11_sd15", [("SD1.5", [*SD15_DRAWBENCH, None], "weak"),
                           ("Dpo-Lora", [25.8896, 5.2895, 21.2308, 49.3617], "strong"),
                           ("W2SD", [25.9431, 5.3553, 21.2589, 50.6399], "w2sd")]),
        ("eval_t11_sdxl", [("SDXL", [*SDXL_DRAWBENCH, None], "weak"),
                           ("xlMoreArtFullV1", [31.2727, 5.5487, 22.7721, 47.0396], "strong"),
                           ("W2SD", [32.34857, 5.7595, 22.8301, 52.9588], "w2sd")])]),
    "12": ("Video (AnimateDiff, 200 VBench prompts; VBench-style, %)", [
        ("Subject", "subject_consistency"), ("Background", "background_consistency"),
        ("Smoothness", "motion_smoothness"), ("Dynamic", "dynamic_degree"), ("Aesthetic", "aesthetic_quality"),
        ("Imaging", "imaging_quality_musiq")], [
        ("eval_t12", [("AnimateDiff (SDXL)", [91.4152, 95.8491, 94.1647, 45.0000, 55.3108, 58.4293], "weak"),
                      ("AnimateDiff (Juggernaut-XL)", [96.0820, 97.5463, 96.8834, 13.0653, 57.7097, 64.1674],
                       "strong"),
                      ("W2SD", [97.1398, 97.9386, 96.8706, 8.0000, 59.3736, 64.6987], "w2sd")])]),
    "13": ("Injected inversion error (xlMoreArtFullV1 vs SDXL), Pick-a-Pic", IMAGE_COLUMNS, [
        ("eval_t13", [("SDXL", [*SDXL_PICKAPIC, None], "weak"), ("xlMoreArtFullV1", XLMOREART_PICKAPIC, "strong"),
                      ("W2SD (k = 0)", W2SD_XLMOREART_PICKAPIC, "w2sd"),
                      ("W2SD (k = 0.005)", [32.9341, 6.3228, 22.3221, 46.7130], "w2sd_k0005"),
                      ("W2SD (k = 0.010)", [19.5277, 4.3949, 17.9267, 1.3440], "w2sd_k0010")])]),
    "14": ("Re-Sampling as a W2SD instance (SDXL, guidance difference), Pick-a-Pic", IMAGE_COLUMNS, [
        ("eval_t14", [("SDXL", [*SDXL_PICKAPIC, None], "strong"),
                      ("Re-Sampling (sim < 0)", [30.2797, 6.0744, 21.6894, 48.4793], "resampling_anti"),
                      ("Re-Sampling (sim > 0)", [30.7844, 6.0555, 21.8620, 51.5210], "resampling_aligned"),
                      ("W2SD", W2SD_SDXL_CFG_PICKAPIC, "w2sd")])]),
    "15": ("Autoguidance (w = 1) vs W2SD, Pick-a-Pic", IMAGE_COLUMNS[:3], [
        ("eval_t15", [("SDXL", SDXL_PICKAPIC, "weak"), ("xlMoreArtFullV1", XLMOREART_PICKAPIC[:3], "strong"),
                      ("Auto-guidance", [32.1650, 6.1187, 22.0177], "autoguidance"),
                      ("W2SD", W2SD_XLMOREART_PICKAPIC[:3], "w2sd")])]),
}


# Tables beyond the paper, run through the same `experiment=table_<key>` machinery; no paper numbers (all None).
NO_PAPER = [None, None, None, None]
BEYOND_PAPER: dict[str, tuple[str, list[tuple[str, str]], list[tuple[str, list[Row]]]]] = {
    "flux": ("Beyond the paper: FLUX.1-dev (rectified flow, T = 28), Pick-a-Pic; no paper numbers exist",
             IMAGE_COLUMNS, [
                 ("eval_tflux_guidance", [("FLUX.1-dev, guidance 3.5 (standard)", NO_PAPER, "strong"),
                                          ("W2SD, guidance gap 3.5 vs 1.0 (λ = 27, NFE 82)", NO_PAPER, "w2sd"),
                                          ("W2SD, guidance gap, λ = 14 (NFE 56)", NO_PAPER, "w2sd_matched"),
                                          ("Difference guidance v_s + (v_s − v_w), w = 1 (NFE 56)", NO_PAPER,
                                           "autoguidance")]),
                 # each block generates its own standard row: the preference column compares against it
                 ("eval_tflux_weights", [("FLUX.1-dev, guidance 3.5 (standard, weight-gap run)", NO_PAPER, "strong"),
                                         ("W2SD, weight gap FLUX.1-dev → schnell (NFE 82)", NO_PAPER, "w2sd")]),
                 ("eval_tflux_cfg", [("FLUX.1-dev, guidance 3.5 (standard, CFG-gap run)", NO_PAPER, "strong"),
                                     ("Z-Sampling-style CFG reflection: cond vs negative prompt (NFE 82)", NO_PAPER,
                                      "w2sd")])]),
}
ALL_TABLES = {**TABLES, **BEYOND_PAPER}


def our_value(results: dict | None, method: str, metric: str) -> float | None:
    """A number from an evaluate results.json: a method mean, its preference %, or its HPS win rate (%)."""
    if results is None or method not in results["metrics"]:
        return None
    if metric in (PREF, "hps_win_rate"):
        for comp in results["extra"].get("comparisons", {}).values():
            if method in (comp["a"], comp["b"]) and (metric == PREF or comp["a"] == method):
                if metric == PREF and "preference" in comp:
                    return comp["preference"][method]
                if metric == "hps_win_rate" and "hps" in comp["metrics"]:
                    return 100.0 * comp["metrics"]["hps"]["win_rate"]
        return None
    return results["metrics"][method].get(metric)


def render(table: str, results_root: Path) -> str:
    caption, columns, blocks = ALL_TABLES[table]
    names = sorted({name for name, _ in blocks})
    stored = {n: load_results(p) if (p := results_root / n / "results.json").exists() else None for n in names}
    header = ["Method"] + [f"{label} {side}" for label, _ in columns for side in ("paper", "ours")]
    lines = [f"**Table {table}** — {caption}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, rows in blocks:
        for label, paper, method in rows:
            cells = []
            for (_, metric), value in zip(columns, paper):
                cells += [format_value(value), format_value(our_value(stored[name], method, metric))]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    missing = [n for n in names if stored[n] is None]
    if missing:
        lines += ["", "ours: no stored results in " + ", ".join(f"`results/{n}`" for n in missing)
                  + "; make each with `python run.py experiment=evaluate run_dir=<generation run> "
                  "hydra.run.dir=results/<name> logger=none`."]
    return "\n".join(lines)


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    intro = ("Paper numbers are from paper.md §4 (arXiv v3). No scored run exists in this repository (no reward-model "
             "weights or GPU here), so every *ours* cell is – until an `experiment=evaluate` results.json is stored "
             "under results/. Our MPS column is the PickScore two-way softmax %: the paper's MPS checkpoint and "
             "protocol are not public (paper.md §11.5). Table 12's Imaging column takes only a MUSIQ scorer's "
             "`imaging_quality_musiq`; our default classical stand-in is stored as "
             "`imaging_quality_laplacian_not_musiq` and is not comparable.")
    return {"paper_tables": "\n\n".join([intro, *(render(t, results_root) for t in TABLES)]),
            "flow_table": render("flux", results_root)}
