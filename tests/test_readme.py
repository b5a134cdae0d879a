# README's commands and the generated result blocks on README.md and docs/*.md stay true.
import re
import subprocess
import sys
from pathlib import Path

from paper_figures.readme_blocks import doc_pages

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->", re.S)


def test_readme_has_main_and_test_commands() -> None:
    assert "python run.py experiment=toy_gmm" in README
    block = README.split("<!-- test-command -->", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", block, re.S).group(1)
    assert "pytest" in command and "HF_HUB_OFFLINE=1" in command and "WANDB_MODE=offline" in command
    assert '-m "slow or not slow"' in command, "CI runs the README command: it must include the slow tests"


def test_readme_is_a_front_door() -> None:
    assert len(README.splitlines()) <= 250
    for page in re.findall(r"\]\((docs/[\w-]+\.md)\)", README):
        assert page.startswith("docs/")
    assert "](docs/toy-results.md)" in README and "](docs/evaluation.md)" in README


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "for marker in main-command test-command; do" in ci and 'bash -euo pipefail -c "$cmd"' in ci


def test_result_blocks_on_readme_and_docs_match_stored_results() -> None:
    proc = subprocess.run([sys.executable, "-m", "paper_figures", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    moved = {"toy_gmm", "ablation_reflection_steps", "digits_dataset_gap", "paper_tables", "bench_overhead"}
    on_docs = {name for page in doc_pages(ROOT)[1:] for name in re.findall(r"<!-- results:(\w+) -->",
                                                                           page.read_text())}
    assert moved <= on_docs, f"blocks missing from docs/: {moved - on_docs}"


def test_no_hand_written_durations_outside_generated_blocks() -> None:
    """Measured times belong in stored results and generated blocks, never typed into prose."""
    duration = re.compile(r"(?<![\w.])\d+(\.\d+)?( s| h|\s?(sec|seconds|min|minutes|hours))\b")
    for page in doc_pages(ROOT):
        prose = BLOCK.sub("", page.read_text())
        hits = [m.group(0) for m in duration.finditer(prose)]
        assert not hits, f"{page.relative_to(ROOT)}: hand-written durations {hits}; generate them from results"
