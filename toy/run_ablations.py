# `python -m toy.run_ablations`: check every toy ablation sweep, then run them all as Hydra multiruns, timed.
"""Each ablation is `python run.py -m experiment=NAME` with the sweep in its config (`hydra.sweeper.params`).
Before anything runs, every job of every sweep is composed and validated here, so an unknown sweep parameter,
an empty sweep or a bad value stops the whole set with one line naming it. Sweeps write to ROOT/NAME/<overrides>/
and skip jobs whose results.json already holds the same config, so an interrupted run resumes where it stopped.
Publish the committed results with `python -m toy.run_ablations --root results --logger none`."""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from w2sd.lifeline import parent_env
from w2sd.runner import validated_experiment
from w2sd.validation import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ABLATIONS = ("ablation_reflection_steps", "ablation_gap_magnitude", "ablation_gap_scale", "ablation_inversion",
             "ablation_resampling", "compare_matched_nfe", "delta_alignment")


def sweep_params(name: str, overrides: list[str]) -> dict[str, list[str]]:
    """The sweep of experiment `name`: its config's hydra.sweeper.params, then `key=v1,v2` overrides on top."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
    specs = {k: str(v) for k, v in (cfg.hydra.sweeper.params or {}).items()}
    parser = OverridesParser.create()
    for text in overrides:
        try:
            key = parser.parse_override(text).get_key_element()
        except HydraException as err:
            raise ConfigError(f"{name}: cannot parse override {text!r}: {str(err).splitlines()[0]}") from err
        specs[key] = text.split("=", 1)[1]
    params = {}
    for key, spec in specs.items():
        try:
            override = parser.parse_override(f"{key}={spec}")
            values = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
        except HydraException as err:
            raise ConfigError(f"{name}: sweep {key}={spec} is invalid: {str(err).splitlines()[0]}") from err
        if not values:
            raise ConfigError(f"{name}: the sweep over {key} ({spec}) has no values; give at least one")
        params[key] = values
    return params


def sweep_jobs(params: dict[str, list[str]]) -> list[list[str]]:
    """The Cartesian product of the sweep as per-job override lists (Hydra's basic sweeper does the same)."""
    keys = list(params)
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(params[k] for k in keys))]


def check_sweep(name: str, overrides: list[str]) -> int:
    """Compose and validate every job of a sweep without running it; returns the number of jobs."""
    jobs = sweep_jobs(sweep_params(name, overrides))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for job in jobs:
            try:
                cfg = compose("config", overrides=[f"experiment={name}", f"paths.root_dir={ROOT}", *job])
            except (HydraException, OmegaConfBaseException) as err:
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]
                raise ConfigError(f"{name}: job {' '.join(job)} is invalid (unknown sweep parameter or value?): "
                                  f"{' / '.join(lines[:3])}") from err
            try:
                validated_experiment(cfg)
            except ConfigError as err:
                raise ConfigError(f"{name}: job {' '.join(job)}: {err}") from err
    return len(jobs)


def launch(name: str, overrides: list[str], root: Path, logger: str, jobs: int) -> float:
    """Run one sweep as a Hydra multirun in a subprocess; returns its wall time."""
    command = [sys.executable, "run.py", "-m", f"experiment={name}", f"hydra.sweep.dir={root / name}",
               f"logger={logger}", *overrides]
    if jobs > 1:
        command += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    # One BLAS thread per process: two threads per process on a 2-core box made the GMM scores 10× slower.
    # parent_env: the sweep (and its workers) stop when this driver is killed, even by SIGKILL.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), **parent_env()}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise ConfigError(f"{name}: the sweep failed (exit code {done.returncode}); see its output above. "
                          f"Re-running resumes it: finished jobs are skipped")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toy.run_ablations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=ABLATIONS, help="run only this sweep (repeatable)")
    parser.add_argument("--root", type=Path, default=ROOT / "outputs" / "ablations",
                        help="sweep folders go to ROOT/<experiment> (results: the committed ones)")
    parser.add_argument("--logger", default="wandb", choices=("wandb", "none"), help="W&B offline or no tracking")
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs per sweep (joblib launcher); 1 = serial")
    parser.add_argument("--check", action="store_true", help="only compose and validate every job")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every sweep, e.g. num_seeds=3 "
                                                     "or a sweep such as sampler.lam=0,10")
    args = parser.parse_args(argv)
    names = args.only or list(ABLATIONS)
    root = args.root if args.root.is_absolute() else (Path.cwd() / args.root)
    try:
        counts = {name: check_sweep(name, args.overrides) for name in names}
        print("sweeps: " + ", ".join(f"{n} ({c} jobs)" for n, c in counts.items()))
        if args.check:
            return 0
        times = {name: launch(name, args.overrides, root, args.logger, args.jobs) for name in names}
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, seconds in times.items():
        print(f"{name:28s} {counts[name]:3d} jobs  {seconds:7.1f} s")
    print(f"total time: {sum(times.values()):.1f} s for {sum(counts.values())} jobs in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
