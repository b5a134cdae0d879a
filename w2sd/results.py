# Run outputs: atomic file writes, stable config hashes and the versioned results.json schema.
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from w2sd.validation import ConfigError

RESULTS_SCHEMA_VERSION = 1


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temp file in the same folder, then rename, so readers never see a partial file.

    The temp file is created with mode 0666 and the kernel applies the process umask (mkstemp would force 0600,
    hiding results from the rest of a shared group)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda p: p.write_bytes(data))


def atomic_write_json(path: Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> Path:
    return _atomic(path, lambda p: torch.save(obj, p))


def atomic_savefig(fig: Any, path: Path, **kwargs: Any) -> Path:
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _atomic(path, lambda p: fig.savefig(p, format=fmt, **kwargs))


def quarantine(path: Path) -> Path:
    """Move an unreadable cache file aside to `<name>.corrupt` (kept for inspection) so it is recomputed."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    os.replace(path, target)
    return target


def to_jsonable(value: Any) -> Any:
    """Plain JSON types; non-finite floats become None so the file stays strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):
        return to_jsonable(value.item())
    return value


def config_hash(config: Any) -> str:
    """Short sha256 of a JSON-able config; equal configs give equal hashes across runs and machines."""
    blob = json.dumps(to_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_results(path: Path) -> dict:
    """Read a results.json and check its schema version, naming the fix when it is stale."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no results at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); it is damaged: delete it (or move it away) and re-run "
                          "to recompute it") from err
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != RESULTS_SCHEMA_VERSION:
        raise ConfigError(f"{path} has results schema_version={version!r}, this w2sd reads "
                          f"{RESULTS_SCHEMA_VERSION}; re-run the experiment that wrote it")
    return data
