"""Plain OCR text made safe to show as Markdown."""

import re

# Characters that would turn read text into emphasis, links, code or HTML.
_INLINE = re.compile(r"([\\`*_\[\]<>|])")
# Line starts that Markdown reads as a heading, quote, list item or rule.
_BLOCK_MARK = re.compile(r"^(\s*)([#>+\-=])")
_ORDERED = re.compile(r"^(\s*\d+)([.)])")


def escape_line(text: str) -> str:
    text = _INLINE.sub(r"\\\1", text)
    text = _BLOCK_MARK.sub(r"\1\\\2", text)
    return _ORDERED.sub(r"\1\\\2", text)
