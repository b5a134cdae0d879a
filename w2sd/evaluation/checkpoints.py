# Finding scorer weights on disk (a local path or the Hugging Face cache) and failing with one line when absent.
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from w2sd.validation import ConfigError

T = TypeVar("T")


class MissingCheckpoint(ConfigError):
    """A scorer's weights are neither at the given local path nor in the Hugging Face cache."""


def hub_offline() -> bool:
    """HF_HUB_OFFLINE set → never touch the network (no retries, no HEAD requests), only the local cache."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _missing(scorer: str, source: str, key: str) -> MissingCheckpoint:
    where = "locally or in the Hugging Face cache" + (" (HF_HUB_OFFLINE=1)" if hub_offline() else "")
    return MissingCheckpoint(f"{scorer}: checkpoint {source} not found {where}; download it where the hub is "
                             f"reachable (`hf download {source}`) or set the scorer's `{key}` to a local path")


def resolve_file(local: str | None, repo: str, filename: str, *, scorer: str, key: str) -> Path:
    """`local` if given (must exist), else `filename` of Hub repo `repo` from the cache (downloaded if online)."""
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise MissingCheckpoint(f"{scorer}: {key}={local} is not a file; point it at the downloaded {filename}")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=hub_offline()))
    except Exception as err:  # noqa: BLE001 - hub errors have many types; all mean "not available here"
        raise _missing(scorer, f"{repo} {filename}", key) from err


def load_pretrained(loader: Callable[..., T], name_or_path: str, *, scorer: str, key: str, **kwargs) -> T:
    """`loader.from_pretrained`-style call on a local folder or Hub id, cache-only when offline."""
    local = Path(name_or_path).expanduser()
    try:
        if local.exists():
            return loader(str(local), **kwargs)
        return loader(name_or_path, local_files_only=hub_offline(), **kwargs)
    except Exception as err:  # noqa: BLE001 - OSError, EnvironmentError, hub errors: all mean "not available"
        if local.exists():  # e.g. a model folder without its processor files: one line, not a traceback
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise MissingCheckpoint(f"{scorer}: {local} is not a complete checkpoint folder ({reason}); set the "
                                    f"scorer's `{key}` to a folder saved with save_pretrained") from err
        raise _missing(scorer, name_or_path, key) from err
