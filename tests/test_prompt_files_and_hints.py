# Issue 20: damaged prompt files are refused with file and line; every override an error or dry run prints works.
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from in_process import run_here

from w2sd.pipelines.prompts import load_prompts
from w2sd.validation import ConfigError

# (file bytes, line the damage is on, words of the refusal); each line number is counted by hand from the bytes
DAMAGED = [
    (b'prompt\na cat\n"a dog\nb bird\n', 3, "unexpected end of data"),  # unterminated quote: would merge 2 prompts
    (b'prompt\n"a dog" sits\nb bird\n', 2, "expected after"),            # a stray quote after a quoted field
    (b"prompt,refined\na,b\nc\n", 3, "1 fields, the header has 2"),      # a ragged row
    (b"prompt\na cat\nb\x00ird\n", 3, "a NUL byte"),
    (b"prompt\na cat\ncaf\xe9 au lait\n", 3, "byte 0xe9 is not UTF-8"),    # Latin-1, not UTF-8
]


@pytest.mark.parametrize("data, line, words", DAMAGED)
def test_damaged_prompt_file_is_refused_with_file_and_line(data: bytes, line: int, words: str, tmp_path: Path) -> None:
    file = tmp_path / "prompts.csv"
    file.write_bytes(data)
    with pytest.raises(ConfigError) as err:
        load_prompts({"file": str(file), "column": "prompt"})
    assert str(err.value).startswith(f"prompts.file={file} line {line}: ") and words in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_well_formed_quotes_commas_and_line_breaks_read_as_the_csv_module_reads_them(tmp_path: Path) -> None:
    text = 'prompt,n\n"a cat, sitting",1\n"a ""quoted"" dog",2\n"two\nlines",3\n\nplain,4\n'
    file = tmp_path / "prompts.csv"
    file.write_text(text, encoding="utf-8")
    expected = [row["prompt"] for row in csv.DictReader(text.splitlines(keepends=True))]
    assert [item.prompt for item in load_prompts({"file": str(file), "column": "prompt"})] == expected
    assert len(expected) == 4


def test_damaged_prompt_file_on_the_command_line_is_one_error_line(tmp_path: Path, capsys, monkeypatch) -> None:
    file = tmp_path / "prompts.csv"
    file.write_bytes(DAMAGED[0][0])
    run_dir = tmp_path / "run"
    code, out, err = run_here(["experiment=sd15_cfg", "logger=none", f"++prompts.file={file}", "prompts.column=prompt",
                               f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == [lines[0]] and lines[0].startswith(f"error: prompts.file={file} line 3: ")
    assert not run_dir.exists()


HINT = re.compile(r"\+\+([\w.]+)=(\S+?)[`)]?(?:\s|$)")


def hints(text: str) -> dict[str, str]:
    """key → placeholder of every `++key=value` override a report or error line suggests."""
    return {m.group(1): m.group(2) for m in HINT.finditer(text)}


def test_every_override_a_table_dry_run_suggests_is_accepted_as_printed(tmp_path: Path, capsys, monkeypatch) -> None:
    """`experiment=table_10 dry_run=true` names each missing weight with an override to copy; with every one of them
    given (pointing at existing files), Hydra accepts the command and each line turns to `found`."""
    base = ["experiment=table_10", "dry_run=true", "logger=none", f"paths.prompts_dir={tmp_path / 'nowhere'}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    code, out, err = run_here(base, capsys, monkeypatch)
    assert code == 0, err
    suggested = hints(out)
    assert "blocks.eval_t10_sd15.set.gap.models.base.path" in suggested  # issue 20: it was printed without ++
    assert "blocks.eval_t10_sd15.set.prompts.file" in suggested
    assert all(f"++{key}=" in out for key in suggested)
    here = tmp_path / "local"
    here.mkdir()
    (here / "prompts.csv").write_text("caption\n" + "".join(f"a photo {i}\n" for i in range(100)), encoding="utf-8")
    (here / "weights.pt").write_bytes(b"")
    files = {".csv": here / "prompts.csv", "file": here / "weights.pt", ".pth": here / "weights.pt"}
    given = [f"++{key}={next((f for k, f in files.items() if k in value), here)}" for key, value in suggested.items()]
    code, out, err = run_here([*base, *given], capsys, monkeypatch)
    assert code == 0, err
    for key in suggested:
        shown = key.removesuffix(".path").removesuffix(".id")
        assert re.search(rf"^  found    {re.escape(shown)}[:=]", out, re.M), (key, out)


def test_the_full_table_run_names_the_block_key_and_its_hint_is_accepted(tmp_path: Path, capsys, monkeypatch) -> None:
    """The full run's refusal of a missing prompts file used to say `prompts.file`; in a table the key is
    `blocks.<b>.set.prompts.file`, and the printed override, given, moves the run past that check."""
    run_dir = tmp_path / "run"
    base = ["experiment=table_10", "logger=none", f"paths.prompts_dir={tmp_path / 'nowhere'}",
            f"hydra.run.dir={run_dir}"]
    code, out, err = run_here(base, capsys, monkeypatch)
    assert code == 2 and err.startswith("error: blocks.eval_t10_sd15.set.prompts.file=") and not run_dir.exists()
    (key, _), = hints(err).items()
    assert key == "blocks.eval_t10_sd15.set.prompts.file"
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("caption\n" + "".join(f"a photo {i}\n" for i in range(100)), encoding="utf-8")
    code, out, err = run_here([*base, f"++{key}={prompts}"], capsys, monkeypatch)
    assert code == 2 and "blocks.eval_t10_sd15.set.prompts.file" not in err  # that check passed; the next one speaks
    assert err.startswith("error: blocks.eval_t10_sd15.set.gap.models.base: ") and not run_dir.exists()
    assert "blocks.eval_t10_sd15.set.gap.models.base.path" in hints(err)  # ... with the block's key, `++` included
