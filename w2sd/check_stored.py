# Re-runs stored results from their own recorded configs and checks the metrics and NFE come out identical.
"""`python -m w2sd.check_stored [results/toy_gmm ...]` (default: the four toy studies results/toy_gmm*; `--digits`
adds the digits studies results/digits_*, which sample the committed digit nets) rebuilds each
run's config from its results.json (the same config hash), runs it into a temporary folder and compares `metrics`
and `nfe` (floats bit for bit after the JSON round trip; a difference within 1e-13 relative is reported as rounding:
the stored w1 values differ from a re-run of main itself in the last bits); other differences in `extra` are
listed, timings ignored. Exit status 1 when a metric differs by more than rounding. Trained-model runs reuse or
refill the cache under paths.cache_dir. `--stale` only lists every stored result (results/**/results.json) whose
recorded code is not the running code (w2sd.provenance.code_hash), without re-running anything; exit status 1 when
any is stale."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from w2sd.provenance import same_code
from w2sd.results import config_hash
from w2sd.runner import run_experiment, semantic_config

ROUNDING = 1e-13  # relative: last-bits differences of a metric's float reductions, which main shows too
ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("results/toy_gmm", "results/toy_gmm_2d", "results/toy_gmm_ratio2", "results/toy_gmm_trained")
DIGITS = tuple(sorted(p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "results").glob("digits_*/results.json")))


def stale_results(root: Path = ROOT / "results") -> list[tuple[str, str]]:
    """(run folder relative to the repository, reason) for every stored result not made by the running code."""
    stale = []
    for path in sorted(root.rglob("results.json")):
        current, why = same_code(json.loads(path.read_text(encoding="utf-8")).get("environment"))
        if not current:
            stale.append((path.parent.relative_to(root.parent).as_posix(), why))
    return stale


def _differences(stored: object, fresh: object, path: str) -> list[str]:
    if isinstance(stored, dict) and isinstance(fresh, dict):
        return [d for k in sorted(set(stored) | set(fresh))
                for d in (_differences(stored.get(k), fresh.get(k), f"{path}.{k}") if k in stored and k in fresh
                          else [f"{path}.{k}: only in {'stored' if k in stored else 'fresh'}"])]
    if stored == fresh:
        return []
    rounding = isinstance(stored, float) and isinstance(fresh, float) and math.isclose(stored, fresh, rel_tol=ROUNDING)
    return [f"{path}: stored {stored!r} != fresh {fresh!r}{' (rounding)' if rounding else ''}"]


def check(run_dir: Path) -> tuple[list[str], list[str]]:
    """(metric/NFE differences, other `extra` differences) between run_dir/results.json and a fresh re-run."""
    stored = json.loads((run_dir / "results.json").read_text())
    root = str(ROOT)
    paths = {"root_dir": root, "log_dir": f"{root}/outputs",
             "cache_dir": os.environ.get("W2SD_CACHE", f"{root}/.cache/w2sd"),
             "prompts_dir": os.environ.get("W2SD_PROMPTS", f"{root}/../shared/data/prompts")}
    cfg = OmegaConf.create({**stored["config"], "paths": paths, "logger": {"enabled": False}})
    if config_hash(semantic_config(cfg)) != stored["config_hash"]:
        raise SystemExit(f"error: {run_dir}: the recorded config does not hash to its config_hash")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = json.loads(json.dumps(run_experiment(cfg, Path(tmp))))
    core = _differences({k: stored[k] for k in ("metrics", "nfe")}, {k: fresh[k] for k in ("metrics", "nfe")}, "")
    extra = [d for d in _differences(stored["extra"], fresh["extra"], ".extra") if "time" not in d.split(":")[0]]
    return core, extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run folders holding results.json (default: the toy studies)")
    parser.add_argument("--digits", action="store_true", help="also re-run the digits studies (results/digits_*)")
    parser.add_argument("--stale", action="store_true", help="only list stored results made by other code")
    args = parser.parse_args(argv)
    if args.stale:
        stale = stale_results()
        for run, why in stale:
            print(f"stale: {run}: {why}")
        total = len(list((ROOT / "results").rglob("results.json")))
        print(f"{len(stale)} of {total} stored results are stale (re-run them to refresh)" if stale else
              f"all {total} stored results were made by this code")
        return 1 if stale else 0
    runs = list(args.runs or DEFAULT) + (list(DIGITS) if args.digits else [])
    failed = False
    for run in runs:
        core, extra = check(ROOT / run)
        real = [d for d in core if not d.endswith("(rounding)")]
        failed |= bool(real)
        verdict = "DIFFERENT" if real else "identical up to rounding" if core else "IDENTICAL"
        print(f"{run}: metrics and NFE {verdict}"
              + "".join(f"\n  {d}" for d in core) + "".join(f"\n  (extra) {d}" for d in extra))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
