# Results tables of the 1D and 2D toy studies (paper Figs. 4–5), from results/toy_gmm*/results.json.
from __future__ import annotations

from pathlib import Path

from paper_figures.common import require_results
from w2sd.report import markdown_table

COLUMNS = ["target_mode_weight", "tv_mode_weights", "w1", "nll", "within_mode_std", "nfe"]
EXPERIMENTS = {
    "toy_gmm": "1D, modes ±4 — target = left mode, ideal weight 0.5",
    "toy_gmm_2d": "2D, modes (±4, ±4) — target = bottom-left mode, ideal weight 0.25",
    "toy_gmm_ratio2": "1D with weak bias = 2 × strong bias (strong 0.4/0.6, weak 0.3/0.7) — ideal 0.5",
}


def build(results_root: Path, out_dir: Path) -> dict[str, str]:
    blocks = {}
    for name, caption in EXPERIMENTS.items():
        res = require_results(results_root, name)
        cfg = res["config"]
        world = cfg["world"]
        head = (f"*{caption}.* strong weights {world['strong_weights']}, weak {world['weak_weights']}; "
                f"T = {cfg['sampler']['T']}, λ = {res['extra']['lam']}, inversion `{cfg['sampler']['inversion']}`, "
                f"model `{cfg['model']['kind']}`, {cfg['num_samples']} samples per method, seed {cfg['seed']}.")
        blocks[name] = head + "\n\n" + markdown_table(res["metrics"], COLUMNS)
    return blocks
