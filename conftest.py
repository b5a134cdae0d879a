# Docs are tests: every fenced python and bash block of README.md and docs/*.md runs (tests/docs_blocks.py says how).
import sys
from pathlib import Path

# hidden setup blocks on the pages build the suite's tiny models (tests/pipeline_fixtures.py)
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
from docs_blocks import docs, mark_shell_blocks_slow  # noqa: E402

pytest_collect_file = docs.pytest()
pytest_collection_modifyitems = mark_shell_blocks_slow
