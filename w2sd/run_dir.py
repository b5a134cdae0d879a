# Run folders: a unique default name, one live run per folder (a lock file), and a rescue path for results.
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO

from omegaconf import OmegaConf

from w2sd.validation import ConfigError

LOCK_NAME = ".w2sd.lock"


def run_id() -> str:
    """Default run-folder name: local time to the microsecond plus 4 random hex digits, so two runs started
    together never share a folder (hydra.run.dir uses it through the `w2sd_run_id` resolver)."""
    return f"{dt.datetime.now():%Y-%m-%d_%H-%M-%S.%f}-{secrets.token_hex(2)}"


# cached: every read of hydra.run.dir in one process names the same folder
OmegaConf.register_new_resolver("w2sd_run_id", run_id, use_cache=True, replace=True)


def check_writable(run_dir: Path) -> None:
    """The run folder, or the nearest existing folder above it, accepts a new file (tried, not guessed from mode
    bits, which root, ACLs and read-only mounts all bend)."""
    place = Path(run_dir).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        if not place.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(place))
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write to the run folder {run_dir} ({err.strerror}: {place}); make it writable or "
                          "choose another one with hydra.run.dir=...") from err


def launched_rank() -> int:
    """This process's rank when a launcher started several copies of one command (Lightning's DDP re-runs run.py
    for ranks >= 1, torchrun, Slurm tasks); 0 for a plain run."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class RunLock:
    """An exclusive flock on `<run_dir>/.w2sd.lock`, held for the whole run. The kernel drops it when the process
    ends, however it ends, so a killed run never blocks its own resume; a second live run on the folder fails.
    Taking it is also the writability check: a folder we cannot create a file in fails here, before any work.
    Only rank 0 of a multi-process launch takes it; the other ranks are part of the same run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.handle: IO[str] | None = None

    def __enter__(self) -> RunLock:
        check_writable(self.path.parent)  # an old lock file may still open in a folder that refuses new files
        if launched_rank() != 0:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        except OSError as err:
            raise ConfigError(f"cannot write to the run folder {self.path.parent} ({err.strerror}); make it writable "
                              "or choose another one with hydra.run.dir=...") from err
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise ConfigError(f"{self.path.parent} is in use by another live run (pid {owner}); wait for it to finish "
                              "or choose another folder with hydra.run.dir=...") from err
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the flock; the file stays (unlinking it would race)
            self.handle = None


def rescue_path(name: str, chash: str) -> Path:
    """Where results go when the run folder cannot take them: the temp folder, named by experiment and hash."""
    return Path(tempfile.gettempdir()) / f"w2sd-rescued-{name}-{chash}-{run_id()}.json"
