# README's commands and generated result blocks stay true.
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_has_main_and_test_commands() -> None:
    assert "python run.py experiment=toy_gmm" in README
    block = README.split("<!-- test-command -->", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", block, re.S).group(1)
    assert "pytest" in command and "HF_HUB_OFFLINE=1" in command and "WANDB_MODE=offline" in command


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and 'bash -euo pipefail -c "$test_cmd"' in ci


def test_readme_result_blocks_match_stored_results() -> None:
    proc = subprocess.run([sys.executable, "-m", "paper_figures", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
