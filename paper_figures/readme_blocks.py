# Replacing generated blocks in README.md: `<!-- results:NAME -->` … `<!-- /results:NAME -->`.
from __future__ import annotations

import re
from collections.abc import Mapping

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
