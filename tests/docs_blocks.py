# How README.md and docs/*.md blocks run as tests: sybil parsers, the page checkout, the docs-test directives.
from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
from sybil import Example, Region, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer

ROOT = Path(__file__).resolve().parent.parent
# What a user's checkout lacks (caches, earlier outputs) stays out of the copy a page's commands run in.
NOT_COPIED = (".git", "outputs", "multirun", "wandb", "mutants", ".cache", "__pycache__", ".test-artifacts",
              ".pytest_cache", ".ruff_cache", "*.egg-info", ".w2sd.lock")
BLOCK_TIMEOUT_S = 300
SKIP_REASON = re.compile(r'"[^"]*\b(weights|GPU)\b[^"]*"')  # a block is left unrun only for weights or a GPU


def page_checkout(namespace: dict) -> None:
    """Sybil setup per page: the page's commands run from a fresh copy of this checkout, so relative paths
    (results/, outputs/) mean what they mean to a user and nothing they write lands in the repository."""
    scratch = Path(tempfile.mkdtemp(prefix="w2sd-docs-"))
    shutil.copytree(ROOT, scratch / "w2sd", ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    if (ROOT.parent / "shared").is_dir():  # the prompt files' default place, beside the checkout (as in CI)
        (scratch / "shared").symlink_to(ROOT.parent / "shared")
    namespace["__checkout__"] = scratch / "w2sd"
    namespace["__cwd__"] = Path.cwd()
    os.chdir(scratch / "w2sd")  # python blocks run in this process: what they save lands in the copy too


def drop_checkout(namespace: dict) -> None:
    os.chdir(namespace["__cwd__"])
    shutil.rmtree(namespace["__checkout__"].parent, ignore_errors=True)


def with_small_form(source: str, command: str, overrides: str) -> str:
    """The block with the page's documented small-form `overrides` appended to each line that runs `command`
    (before its trailing comment)."""
    lines, changed = [], 0
    for line in source.splitlines():
        if line.startswith(command + " ") or line == command:
            if line.rstrip().endswith("\\"):
                raise ValueError(f"small-form blocks take one command per line; got a continued line: {line!r}")
            code, _, comment = line.partition("  #")
            line, changed = f"{code.rstrip()} {overrides}" + (f"  #{comment}" if comment else ""), changed + 1
        lines.append(line)
    if not changed:
        raise ValueError(f"small-form {command!r}: no line of the block runs it:\n{source}")
    return "\n".join(lines) + "\n"


def run_py_commands(source: str) -> list[list[str]] | None:
    """The argument lists of a block whose every line is a plain `python run.py ARGS` (quotes and comments only, no
    other shell syntax), else None."""
    commands = []
    for line in source.splitlines():
        if re.search(r"[|&;<>$`\\*?]", line.split("  #")[0]):
            return None
        words = shlex.split(line, comments=True)
        if words and words[:2] != ["python", "run.py"]:
            return None
        if words:
            commands.append(words[2:])
    return commands or None


def run_py_here(args: list[str], checkout: Path) -> tuple[int, str, str]:
    """`python run.py ARGS` from `checkout`, in this process (the imports are paid once per suite, not once per
    command): the same argv, working directory and environment as the shell would give it."""
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, saved_env = sys.argv, Path.cwd(), dict(os.environ)
    os.environ.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "W2SD_SWEEP_PARENT": ""})
    sys.argv = ["run.py", *args]
    os.chdir(checkout)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(checkout / "run.py"), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # noqa: BLE001 - a traceback is what the shell would have shown
        code, err = 1, io.StringIO(err.getvalue() + traceback.format_exc())
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return code, out.getvalue(), err.getvalue()


def run_block(source: str, checkout: Path) -> tuple[int, str, str]:
    """The block's exit status, stdout and stderr: `python run.py` lines in this process (stopping at the first
    failure, as `bash -e` does), any other block verbatim with `bash -euo pipefail`, offline."""
    commands = run_py_commands(source)
    if commands is None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", source], cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S)
        return proc.returncode, proc.stdout, proc.stderr
    outs, errs = [], []
    for args in commands:
        code, out, err = run_py_here(args, checkout)
        outs.append(out)
        errs.append(err)
        if code != 0:
            break
    return code, "".join(outs), "".join(errs)


def run_bash_block(example: Example) -> str | None:
    """Run the block in the page's checkout (`run_block`); the `docs-test` directive just above it (if any) says what
    to expect."""
    directive = example.namespace.pop("__next_block__", {})
    source = example.parsed
    if "small-form" in directive:
        command, overrides = directive["small-form"]
        if f"`{overrides}`" not in example.document.text:
            return f"the small form `{overrides}` must be written on the page, not only in the directive"
        source = with_small_form(source, command, overrides)
    code, stdout, stderr = run_block(source, example.namespace["__checkout__"])
    log = f"\n--- block ---\n{source}--- stdout (tail) ---\n{stdout[-3000:]}\n--- stderr (tail) ---\n{stderr[-3000:]}"
    if "error" in directive:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        if code != 2 or not last.startswith("error:") or directive["error"] not in last:
            return f"expected rc 2 and a last line 'error: …{directive['error']}…', got rc {code}{log}"
        if "Traceback" in stderr:
            return f"expected one error line, got a traceback{log}"
        return None
    if code != 0:
        return f"rc {code}{log}"
    return None


def read_directive(example: Example) -> None:
    """How the next bash block is run: `<!-- docs-test: small-form "COMMAND" "OVERRIDES" -->` (OVERRIDES appended to
    each line running COMMAND), `… error "TEXT" -->` (ends in one `error: …TEXT…` line, rc 2) or `… ci -->`."""
    kind, *values = shlex.split(example.parsed.strip())
    arity = {"small-form": 2, "error": 1, "ci": 0}
    if kind not in arity or len(values) != arity[kind]:
        raise ValueError(f"bad docs-test directive {example.parsed.strip()!r} in {example.path}; use "
                         f'small-form "COMMAND" "OVERRIDES", error "TEXT" or ci')
    example.namespace["__next_block__"] = {kind: values if kind == "small-form" else (values or [""])[0]}


class DocsTestDirectiveParser:
    def __init__(self) -> None:
        self.lexer = DirectiveInHTMLCommentLexer("docs-test", arguments=".+?")

    def __call__(self, document):
        for region in self.lexer(document):
            yield Region(region.start, region.end, region.lexemes["arguments"], read_directive)


def run_or_hand_to_ci(example: Example) -> str | None:
    """A block under `docs-test: ci` is one that .ci/run itself executes on a clean clone (the install with the main
    job, the test command): run from a test it would re-install the package or run the suite inside itself."""
    if "ci" not in example.namespace.get("__next_block__", {}):
        return run_bash_block(example)
    example.namespace.pop("__next_block__")
    commands = [line for line in example.parsed.splitlines() if line.strip() and not line.startswith("#")]
    if example.document.path.endswith("development.md") and all("python -m pytest" in c for c in commands):
        return None  # the suite itself: CI runs it through README's test command
    ci = (ROOT / ".ci" / "run").read_text()
    marker = next((m for m in ("main-command", "test-command") if f"<!-- {m} -->\n<!-- docs-test: ci -->\n```bash\n"
                   f"{example.parsed}" in example.document.text), None)
    if marker is None or not re.search(rf"^for marker in [^\n]*\b{marker}\b", ci, re.M):
        return f".ci/run does not run this block (it runs the blocks after <!-- main-command --> and " \
               f"<!-- test-command --> in README.md):\n{example.parsed}"
    return None


def check_skip_reasons(document) -> None:
    for match in re.finditer(r"^[ \t]*<!-- skip: next(.*?)-->", document.text, re.M):  # where sybil reads them
        if not SKIP_REASON.search(match.group(1)):
            raise ValueError(f"{document.path}: a skipped block must say it needs hub weights or a GPU "
                             f"(never time: run a long study in its small form); got {match.group(0)!r}")


def skip_parser_checking_reasons(document):
    check_skip_reasons(document)
    yield from SkipParser()(document)


# The docs pages are collected by the repository root's conftest.py with this Sybil.
docs = Sybil(
    parsers=[skip_parser_checking_reasons, DocsTestDirectiveParser(), PythonCodeBlockParser(),
             CodeBlockParser("bash", evaluator=run_or_hand_to_ci)],
    patterns=["README.md", "docs/*.md"],
    path=str(ROOT),
    setup=page_checkout,
    teardown=drop_checkout,
)


def mark_shell_blocks_slow(items: list[pytest.Item]) -> None:
    """Shell blocks start processes (seconds each): `slow`, like the other end-to-end tests."""
    for item in items:
        if getattr(item, "example", None) is not None and isinstance(item.example.region.parsed, str) \
                and item.example.region.evaluator is run_or_hand_to_ci:
            item.add_marker(pytest.mark.slow)
