# Worker processes of a sweep driver die with it, even when the driver is killed with SIGKILL (no orphans writing).
"""A driver (toy.run_ablations, or `run.py -m` with the joblib launcher) names itself in W2SD_SWEEP_PARENT
("host:pid") in the environment its workers inherit. A w2sd process whose parent is that process asks the kernel
for SIGKILL when the parent dies (Linux PR_SET_PDEATHSIG; other systems keep the old behaviour). A process started by
anything else (a shell, nohup, Slurm on another host) is left alone."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

ENV = "W2SD_SWEEP_PARENT"
PR_SET_PDEATHSIG = 1


def parent_env() -> dict[str, str]:
    """Environment entries that make this process the one a child (and its own children) die with."""
    return {ENV: f"{socket.gethostname()}:{os.getpid()}"}


def die_with_parent() -> None:
    """If W2SD_SWEEP_PARENT names this process's parent, end this process when the parent ends."""
    host, _, pid = os.environ.get(ENV, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return
    parent = int(pid)
    if not sys.platform.startswith("linux"):
        return
    if os.getppid() != parent:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:  # the driver is already gone: this job must not run as an orphan
            os.kill(os.getpid(), signal.SIGKILL)
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died between the check and prctl
        os.kill(os.getpid(), signal.SIGKILL)
