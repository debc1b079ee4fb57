"""A word diff (models/metrics.py) as HTML for one side of a comparison: the side's own words,
with what differs marked so a person sees every edit at a glance.

Against the other reading: words only this side has are marked as deleted (red) on the left
and inserted (green) on the right; substituted words are amber on both sides. Against the
true text: extra words are green, substituted ones amber (the true words in their tooltip),
and true words the reading left out are shown struck through, so a deletion is visible too.
"""

from __future__ import annotations

import re
from html import escape
from typing import Literal

from models.metrics import DiffOp

LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what Markdown counts as the end of a line
STYLES = {
    "insert": "background:#c8f7c5",
    "delete": "background:#fbc7c3",
    "replace": "background:#ffe8a3",
    "missing": "color:#b42318;text-decoration:line-through",
}


def _span(kind: str, words: list[str], title: str = "") -> str:
    tip = f' title="{escape(title)}"' if title else ""
    return f'<span class="diff-{kind}" style="{STYLES[kind]}"{tip}>{escape(" ".join(words))}</span>'


def between_readings(ops: list[DiffOp], side: Literal["left", "right"]) -> str:
    """One reading's words, from a diff of the left reading into the right one."""
    parts = []
    for op in ops:
        own = op.left if side == "left" else op.right
        if not own:
            continue
        if op.tag == "equal":
            parts.append(escape(" ".join(own)))
        elif op.tag == "replace":
            parts.append(_span("replace", own, " ".join(op.right if side == "left" else op.left)))
        else:
            parts.append(_span("delete" if side == "left" else "insert", own))
    return " ".join(parts)


def against_truth(ops: list[DiffOp]) -> str:
    """A reading's words, from a diff of the true text into the reading."""
    parts = []
    for op in ops:
        if op.tag == "equal":
            parts.append(escape(" ".join(op.right)))
        elif op.tag == "insert":
            parts.append(_span("insert", op.right))
        elif op.tag == "delete":
            parts.append(_span("missing", op.left))
        else:
            parts.append(_span("replace", op.right, " ".join(op.left)))
    return " ".join(parts)


def block(html: str, empty: str) -> str:
    """A side's text in a box that wraps; ``empty``: what to say when it has no text.

    One line of HTML: in Markdown an HTML block ends at a blank line, and whatever follows
    would be read as Markdown (headings, tables, images fetched from anywhere), so the text's
    line breaks are <br> inside the block."""
    body = "<br>".join(LINE_BREAK.split(html)) or "<i>" + escape(empty) + "</i>"
    return (f'<div class="diff-text" style="white-space:pre-wrap;line-height:1.7;'
            f'border:1px solid #ddd;border-radius:6px;padding:0.6em;max-height:32em;overflow:auto">'
            f"{body}</div>")
