# The run-directory contract end to end: a tiny generation preset's output is scored by the evaluate experiment.
from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline_fixtures as F  # noqa: E402
from eval_tiny_models import tiny_clip  # noqa: E402

from w2sd.runner import run_experiment  # noqa: E402


def test_generation_run_is_scored_by_evaluate(tmp_path, compose_config) -> None:
    F.sd15_pipeline().save_pretrained(tmp_path / "sd15")
    prompts = tmp_path / "prompts.csv"
    with prompts.open("w", newline="") as handle:
        csv.writer(handle).writerows([["prompt"], ["a red cat"], ["a blue car"], ["a green tree"]])
    gen_dir = tmp_path / "gen"
    gen_cfg = compose_config(["experiment=sd15_cfg", "logger=none", f"prompts.file={prompts}", "prompts.column=prompt",
                              "pipeline.height=32", "pipeline.width=32", "sampler.T=2", "sampler.lam=1",
                              f"gap.models.base.path={tmp_path / 'sd15'}", f"hydra.run.dir={gen_dir}"])
    run_experiment(gen_cfg, gen_dir)
    clip = tiny_clip(tmp_path / "clip")
    eval_dir = tmp_path / "eval"
    eval_cfg = compose_config(["experiment=evaluate", f"run_dir={gen_dir}", "scorer_names=[pickscore]",
                               f"scorers.pickscore.model={clip}", f"scorers.pickscore.processor={clip}",
                               "scorers.pickscore.device=cpu", "bootstrap.resamples=200", "logger=none",
                               f"hydra.run.dir={eval_dir}"])
    results = run_experiment(eval_cfg, eval_dir)
    with (eval_dir / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == {"weak", "strong", "w2sd", "autoguidance"} and len(rows) == 12
    assert {r["prompt"] for r in rows} == {"a red cat", "a blue car", "a green tree"}
    for method in ("weak", "strong", "w2sd", "autoguidance"):
        assert results["metrics"][method]["n"] == 3
    assert "w2sd_vs_strong" in results["extra"]["comparisons"]
