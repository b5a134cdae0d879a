# Weights & Biases logging: offline by default, never required, never able to lose results already on disk.
"""`start_run` starts the W&B run in a child process (this file run as a script: it imports neither torch nor w2sd)
when the experiment starts, so W&B's own start-up (a second and a half: its import, its service, the launch module
it loads on every init) runs on the other core while the experiment works. `TrackedRun.finish` sends the finished
run's metrics, figures, tables and images to the child, which logs them and closes the run; `abort` closes it as
failed (exit code 1) when the experiment raised. The child runs at a lower priority, so the experiment's own
timings keep the CPU they had. Failures are reported and swallowed: results.json is written before `finish`."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FINISH_TIMEOUT_S = 300  # a W&B child that has not closed its run by then is killed; results.json is on disk already


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested config → {"sampler.T": 50, ...}, so W&B panels can filter on every key."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _encode(value: Any) -> Any:
    """JSON for the child: a Path in a table row is an image to log; numpy scalars become Python numbers."""
    if isinstance(value, Path):
        return {"__image__": str(value)}
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class TrackedRun:
    """A W&B run being started (then kept open) by a child process; with no process, logging is off. As a context
    manager it closes a run that was not finished as failed, naming the exception."""

    def __init__(self, proc: subprocess.Popen | None) -> None:
        self.proc = proc

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: Any) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.abort(f"{kind.__name__}: {err}" if kind is not None else "closed without finishing")

    def _close(self, message: dict) -> dict:
        try:
            out, err = self.proc.communicate(json.dumps(message, default=_encode) + "\n", timeout=FINISH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {"error": f"the W&B child did not finish within {FINISH_TIMEOUT_S} s and was stopped"}
        except (BrokenPipeError, OSError) as exc:  # the child is already gone: what it printed says why
            out, err = self.proc.communicate()
            if not out.strip():
                return {"error": f"the W&B child exited early ({type(exc).__name__}): {err.strip()[-300:]}"}
        lines = out.strip().splitlines()
        try:
            return json.loads(lines[-1]) if lines else {"error": f"the W&B child said nothing: {err.strip()[-300:]}"}
        except json.JSONDecodeError:
            return {"error": f"unreadable reply from the W&B child: {lines[-1][-300:]}"}

    def finish(self, *, metrics: Mapping[str, Mapping[str, Any]], figures: Mapping[str, Path],
               tables: Mapping[str, tuple[list[str], list[list[Any]]]] | None = None,
               images: Mapping[str, list[tuple[Path, str]]] | None = None) -> Path | None:
        """Log the finished run and close it; the local W&B run folder, or None (with a warning) if that failed.

        `tables`: name → (columns, rows) logged as wandb.Table, a Path cell as a wandb.Image; `images`: name →
        [(path, caption)] logged as a list of wandb.Image (e.g. sample grids)."""
        if self.proc is None:
            return None
        reply = self._close({"finish": {
            "metrics": metrics, "figures": {k: str(p) for k, p in figures.items()},
            "tables": {k: [list(cols), [list(r) for r in rows]] for k, (cols, rows) in (tables or {}).items()},
            "images": {k: [[str(p), c] for p, c in items] for k, items in (images or {}).items()}}})
        if "error" in reply:
            log.warning("W&B logging failed (%s); results.json is unaffected", reply["error"])
            return None
        return Path(reply["run_dir"])

    def abort(self, reason: str) -> None:
        """Close the run as failed (exit code 1), with `reason` in its summary."""
        if self.proc is None:
            return
        reply = self._close({"abort": reason})
        if "error" in reply:
            log.warning("W&B could not close the failed run (%s)", reply["error"])


def start_run(logger_cfg: Mapping | None, run_dir: Path, *, name: str, config: Mapping, tags: list[str],
              group: str | None = None) -> TrackedRun:
    """Start the run's W&B child; a run with no process when logging is off or (with a warning) cannot start."""
    if not logger_cfg or not logger_cfg.get("enabled", False):
        return TrackedRun(None)
    spec = {"project": logger_cfg.get("project", "w2sd"), "entity": logger_cfg.get("entity"), "dir": str(run_dir),
            "mode": os.environ.get("WANDB_MODE") or logger_cfg.get("mode", "offline"), "name": name,
            "group": group or logger_cfg.get("group"), "tags": list(tags), "config": flatten(config)}
    try:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdin.write(json.dumps(spec, default=_encode) + "\n")
        proc.stdin.flush()
    except OSError as err:
        log.warning("W&B logging failed (could not start its process: %s); results.json is unaffected", err)
        return TrackedRun(None)
    return TrackedRun(proc)


def _decode(value: Any, wandb: Any) -> Any:
    return wandb.Image(value["__image__"]) if isinstance(value, dict) and "__image__" in value else value


def _log_finished(run: Any, wandb: Any, done: Mapping) -> None:
    metrics = done["metrics"]
    scalars = {f"{method}/{key}": value for method, row in metrics.items() for key, value in row.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    columns = sorted({k for row in metrics.values() for k, v in row.items() if isinstance(v, (int, float))})
    payload: dict[str, Any] = {"results": wandb.Table(columns=["method", *columns],
                                                      data=[[m, *(row.get(c) for c in columns)]
                                                            for m, row in metrics.items()])}
    payload.update({f"figures/{k}": wandb.Image(p) for k, p in done["figures"].items()})
    for key, (cols, rows) in done["tables"].items():
        payload[f"tables/{key}"] = wandb.Table(columns=cols, data=[[_decode(v, wandb) for v in r] for r in rows])
    for key, items in done["images"].items():
        payload[f"images/{key}"] = [wandb.Image(p, caption=c) for p, c in items]
    run.log(payload)
    run.summary.update(scalars)


def _child() -> int:
    """The W&B side: init from the first stdin line, then log and close on the second; one JSON reply on stdout."""
    os.nice(5)  # after the experiment in the CPU queue: its timings are what results.json reports
    spec = json.loads(sys.stdin.readline())
    reply: dict[str, Any]
    try:
        import wandb

        run = wandb.init(project=spec["project"], entity=spec["entity"], dir=spec["dir"], mode=spec["mode"],
                         name=spec["name"], group=spec["group"], tags=spec["tags"], config=spec["config"],
                         settings=wandb.Settings(console="off", silent=True))
    except Exception as err:  # noqa: BLE001 - reported to the parent, which carries on without W&B
        sys.stdin.readline()
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}))
        return 1
    line = sys.stdin.readline()  # empty: the parent died without a word, so the run failed
    message = json.loads(line) if line.strip() else {"abort": "the experiment process ended without finishing"}
    try:
        if "finish" in message:
            _log_finished(run, wandb, message["finish"])
            run_path = Path(run.dir).parent
            run.finish()
            reply = {"run_dir": str(run_path)}
        else:
            run.summary["error"] = message["abort"]
            run.finish(exit_code=1)
            reply = {"aborted": True}
    except Exception as err:  # noqa: BLE001 - as above
        reply = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.path.pop(0)  # this file's folder: w2sd's modules must not shadow the packages W&B imports
    sys.exit(_child())
