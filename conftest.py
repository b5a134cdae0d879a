# Docs are tests: every fenced python and bash block of README.md and docs/*.md runs (tests/docs_blocks.py says how).
import os
import sys
from pathlib import Path

# hidden setup blocks on the pages build the suite's tiny models (tests/pipeline_fixtures.py)
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from docs_blocks import docs, mark_shell_blocks_slow  # noqa: E402

pytest_collect_file = docs.pytest()
pytest_collection_modifyitems = mark_shell_blocks_slow


def pytest_configure(config) -> None:
    """Under pytest-xdist (`-n 2` in pyproject's addopts) each worker owns one core: torch, and every process a test
    starts, run one intra-op thread, since two workers each spinning two threads on two cores slow both down."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        import torch

        torch.set_num_threads(1)
