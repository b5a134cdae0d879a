# pyproject.toml and environment.yml declare the same dependencies; the CPU install pins torch.
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def test_environment_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {normalise(r) for r in pip_section if not r.startswith("-e")}
    assert declared == listed, f"only in pyproject: {declared - listed}; only in environment.yml: {listed - declared}"


def test_torch_is_a_range_in_pyproject_and_pinned_for_cpu_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_req = next(normalise(r) for r in project["dependencies"] if normalise(r).startswith("torch"))
    assert "==" not in torch_req and "<" in torch_req
    assert "torch==2.13.0" in (ROOT / "constraints-cpu.txt").read_text()
    assert "constraints-cpu.txt" in (ROOT / ".ci" / "run").read_text()
