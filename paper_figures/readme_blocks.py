# Generated blocks `<!-- results:NAME -->` … `<!-- /results:NAME -->` in README.md and docs/*.md, kept in sync.
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from w2sd.validation import ConfigError


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- results:{re.escape(name)} -->\n)(.*?)(<!-- /results:{re.escape(name)} -->)", re.S)


def replace_blocks(text: str, blocks: Mapping[str, str]) -> str:
    for name, body in blocks.items():
        pattern = block_pattern(name)
        if not pattern.search(text):
            raise ConfigError(f"README.md has no block <!-- results:{name} -->; add the two marker lines")
        text = pattern.sub(lambda m, b=body: m.group(1) + b.rstrip("\n") + "\n" + m.group(3), text)
    return text


def relink(body: str, depth: int) -> str:
    """Blocks link files relative to the repository root; a page `depth` folders down needs `../` that many times."""
    return re.sub(r"(\]\(|src=\")(?!https?:|#|/)", lambda m: m.group(1) + "../" * depth, body) if depth else body


def doc_pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render_pages(root: Path, blocks: Mapping[str, str]) -> dict[Path, tuple[str, str]]:
    """page → (current text, text with every block it holds regenerated). A block may sit on several pages; one
    that sits on none is an error (its numbers would be published nowhere)."""
    out, placed = {}, set()
    for page in doc_pages(root):
        text = page.read_text(encoding="utf-8")
        depth = len(page.relative_to(root).parts) - 1
        present = {n: relink(b, depth) for n, b in blocks.items() if block_pattern(n).search(text)}
        placed |= present.keys()
        out[page] = (text, replace_blocks(text, present))
    if missing := sorted(set(blocks) - placed):
        raise ConfigError(f"no page (README.md, docs/*.md) has the block(s) {missing}; add "
                          "`<!-- results:NAME -->` and `<!-- /results:NAME -->` marker lines where they belong")
    return out
