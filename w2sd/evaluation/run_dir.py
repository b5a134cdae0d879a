# Reading a generation run folder (manifest.csv + images) and refusing anything that would make a partial average.
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from w2sd.pipelines.prompts import load_prompts
from w2sd.validation import ConfigError

MANIFEST_COLUMNS = ("method", "index", "seed", "prompt", "path", "frames")
PROMPT_COLUMNS = ("prompt", "Prompts", "caption", "text")  # first one present in a prompt-set CSV is used


@dataclass(frozen=True)
class Sample:
    method: str
    index: int
    seed: int
    prompt: str
    path: Path
    frames: int


@dataclass
class GenerationRun:
    """Samples per method, aligned by prompt index (every method holds the same indices, seeds and prompts)."""

    root: Path
    prompt_set: str | None
    samples: dict[str, list[Sample]]
    skipped: dict[int, str] = field(default_factory=dict)  # prompt index → why it was left out of every method

    @property
    def indices(self) -> list[int]:
        return [s.index for s in next(iter(self.samples.values()))]


def open_image(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def image_problem(path: Path) -> str | None:
    """Why `path` cannot be scored (missing, unreadable), or None."""
    if not path.is_file():
        return f"missing image {path}"
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # noqa: BLE001 - PIL raises many types for truncated/corrupt files
        return f"corrupt image {path} ({type(err).__name__})"
    return None


def read_manifest(root: Path) -> list[Sample]:
    path = root / "manifest.csv"
    if not path.is_file():
        raise ConfigError(f"{path} not found; run_dir must be a generation run folder (experiment=generate)")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path} lacks columns {missing}; expected header {','.join(MANIFEST_COLUMNS)}")
        try:
            rows = [Sample(r["method"], int(r["index"]), int(r["seed"]), r["prompt"], root / r["path"],
                           int(r["frames"])) for r in reader]
        except ValueError as err:
            raise ConfigError(f"{path}: index, seed and frames must be integers ({err})") from err
    if not rows:
        raise ConfigError(f"{path} lists no images")
    seen: set[tuple[str, int]] = set()
    for s in rows:
        if (s.method, s.index) in seen:
            raise ConfigError(f"{path}: method {s.method!r} has two rows for prompt index {s.index}; "
                              "the protocol is one image per prompt")
        seen.add((s.method, s.index))
    return rows


def read_prompt_set(prompts_cfg: dict) -> list[str]:
    """Prompts of the set a run was generated from, read as generation reads them (w2sd.pipelines.prompts);
    without a `column` the first of PROMPT_COLUMNS in the header is used."""
    cfg = dict(prompts_cfg)
    if not cfg.get("column"):
        with Path(cfg["file"]).open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
        cfg["column"] = next((c for c in PROMPT_COLUMNS if c in header), None)
        if cfg["column"] is None:
            raise ConfigError(f"{cfg['file']} has none of the prompt columns {list(PROMPT_COLUMNS)}")
    return [item.prompt for item in load_prompts(cfg)]


def prompt_set_of(root: Path, prompts_dir: Path | None, override: str | None) -> tuple[str | None, dict]:
    """(name, prompts config with a resolved `file`) of the set a run was generated from (results.json)."""
    prompts: dict = {}
    results = root / "results.json"
    if results.is_file():
        prompts = dict((json.loads(results.read_text(encoding="utf-8")).get("config") or {}).get("prompts") or {})
    file = override or prompts.get("file")
    if not file:
        raise ConfigError(f"{root}/results.json does not name its prompt set (config.prompts.file); "
                          "pass prompts_file=/path/to/prompts.csv")
    candidates = [Path(file).expanduser(), root / file] + ([prompts_dir / file] if prompts_dir else [])
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        looked = ", ".join(str(p.parent) for p in candidates)
        raise ConfigError(f"prompt set file {file} not found (looked in {looked}); set prompts_file")
    if override:  # another file: its own column layout, no limit
        prompts = {"column": None, "skip_empty": True}
    return prompts.get("name"), {**prompts, "file": str(found)}


def _drop(by_method: dict[str, dict[int, Sample]], index: int) -> None:
    for rows in by_method.values():
        rows.pop(index, None)


def load_generation_run(root: str | Path, *, methods: Sequence[str] | None = None, on_missing: str = "error",
                        prompts_dir: Path | None = None, prompts_file: str | None = None,
                        expected_prompt_set: str | None = None) -> GenerationRun:
    """Validated samples of a generation run. `on_missing="skip"` drops a prompt from every method when any
    method's image is absent or corrupt (recorded in `skipped`); "error" refuses the run."""
    root = Path(root).expanduser()
    rows = read_manifest(root)
    name, prompts_cfg = prompt_set_of(root, prompts_dir, prompts_file)
    prompt_file = Path(prompts_cfg["file"])
    if expected_prompt_set and name != expected_prompt_set:
        raise ConfigError(f"run_dir {root} was generated from prompt set {name!r}, not {expected_prompt_set!r}")
    reference = read_prompt_set(prompts_cfg)
    for s in rows:
        if s.index >= len(reference) or s.prompt.strip() != reference[s.index]:
            expected = reference[s.index] if s.index < len(reference) else "<beyond the end of the set>"
            raise ConfigError(f"{root}: prompt {s.index} of {s.method!r} is {s.prompt!r} but {prompt_file.name} has "
                              f"{expected!r}; these images come from a different prompt set")
    present = list(dict.fromkeys(s.method for s in rows))  # manifest order (weak, strong, w2sd)
    chosen = list(methods) if methods else present
    unknown = [m for m in chosen if m not in present]
    if unknown:
        raise ConfigError(f"methods {unknown} are not in {root}/manifest.csv (it has {present})")
    by_method = {m: {s.index: s for s in rows if s.method == m} for m in chosen}
    # The protocol scores the first N prompts of the set; every method must cover 0..N−1 with shared seeds.
    expected = range(max(max(r) for r in by_method.values()) + 1)
    for index in expected:
        seeds = {r[index].seed for r in by_method.values() if index in r}
        if len(seeds) > 1:
            raise ConfigError(f"{root}: prompt {index} has different seeds across methods {sorted(seeds)}; methods "
                              "must share initial noise (seed = prompt index)")
    problems: dict[int, str] = {}
    for index in expected:
        for method, rows_m in by_method.items():
            sample = rows_m.get(index)
            problem = f"no {method} image in manifest" if sample is None else image_problem(sample.path)
            if problem:
                problems.setdefault(index, problem)
    if problems and on_missing != "skip":
        first = min(problems)
        raise ConfigError(f"{len(problems)} of {len(expected)} prompts cannot be scored in every method, e.g. prompt "
                          f"{first}: {problems[first]}; fix the run or pass on_missing=skip to drop them")
    for index in problems:
        _drop(by_method, index)
    if not all(by_method.values()):
        raise ConfigError(f"{root}: no prompt has a readable image in every method")
    samples = {m: [r[i] for i in sorted(r)] for m, r in by_method.items()}
    return GenerationRun(root, name, samples, dict(sorted(problems.items())))
