# The docs-as-tests machinery can fail: a broken block, a missing error, an unwritten small form, a skip for time.
from pathlib import Path

import pytest
from docs_blocks import ROOT, docs
from sybil.example import SybilFailure

FENCE_LANGUAGES = {"python", "bash", "text"}  # text: printed output, not a command


def evaluate_page(tmp_path: Path, text: str) -> list[str]:
    """Parse `text` as a docs page with the suite's Sybil and run each example; returns the failure messages."""
    page = tmp_path / "page.md"
    page.write_text(text)
    document = docs.parse(page)
    failures = []
    docs.setup(document.namespace)
    try:
        for example in document.examples():
            try:
                example.evaluate()
            except SybilFailure as failure:
                failures.append(str(failure))
    finally:
        docs.teardown(document.namespace)
    return failures


def test_a_failing_bash_block_fails_and_a_passing_one_runs_in_a_copy_of_the_checkout(tmp_path) -> None:
    failures = evaluate_page(tmp_path, "```bash\ntest -f run.py && test ! -d .git && touch made_here\n```\n\n"
                                       "```bash\nfalse\n```\n")
    assert len(failures) == 1 and "rc 1" in failures[0]
    assert not (ROOT / "made_here").exists()


def test_a_block_with_continued_lines_runs_in_bash(tmp_path) -> None:
    # `\` continuations are shell syntax: the block goes to bash whole, not to the in-process run.py path
    assert evaluate_page(tmp_path, "```bash\nprintf '%s' \\\n  a > out.txt && test \"$(cat out.txt)\" = a\n```\n") == []


def test_an_error_block_must_end_in_one_error_line_with_rc_2(tmp_path) -> None:
    page = ('<!-- docs-test: error "no such preset" -->\n```bash\npython run.py experiment=no_such_preset\n```\n\n'
            '<!-- docs-test: error "anything" -->\n```bash\ntrue\n```\n')
    failures = evaluate_page(tmp_path, page)
    assert len(failures) == 2  # Hydra's did-you-mean wording is not "no such preset"; `true` has rc 0
    assert all("expected rc 2" in f for f in failures)


def test_the_small_form_is_appended_to_its_command_and_must_be_written_on_the_page(tmp_path) -> None:
    shown = ('Small form: `--flag`.\n\n<!-- docs-test: small-form "echo" "--flag" -->\n```bash\n'
             'echo full  # a comment\ntest "$(echo x --flag)" = "x --flag"\n```\n')
    assert evaluate_page(tmp_path, shown) == []
    hidden = '<!-- docs-test: small-form "echo" "--flag" -->\n```bash\necho full\n```\n'
    assert "must be written on the page" in evaluate_page(tmp_path, hidden)[0]


def test_a_block_skipped_for_time_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs hub weights or a GPU"):
        evaluate_page(tmp_path, '<!-- skip: next "too slow for CI" -->\n```bash\nsleep 999\n```\n')


def test_every_fence_on_the_pages_names_a_language_the_suite_runs_or_is_output() -> None:
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fences = [line[3:].strip() for line in page.read_text().splitlines() if line.startswith("```")]
        opening = fences[0::2]
        assert set(opening) <= FENCE_LANGUAGES, f"{page.name}: fences {set(opening) - FENCE_LANGUAGES}"
