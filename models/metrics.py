"""How well a reading matches the true text: character and word error rates, the word diff
a comparison shows, and true text split into pages. The app and ``cli.py eval`` both score
with this module, so a number means the same wherever it is shown.

Normalisation, applied to both texts before they are compared:
- Unicode NFC, so "й" typed as one code point and as "и" + combining breve are the same
  letter: a model and a person may produce either.
- Whitespace folded: every run of spaces, tabs, line breaks and form feeds is one space,
  and the ends are stripped; where a model breaks lines is layout, not reading.
- Nothing else: case is kept, punctuation is kept, and "ё" stays distinct from "е" (a
  reading that writes "еще" for "ещё" has one substitution), because these documents are
  Russian and a model that drops the diaeresis is reading less than the page says.

CER = character edits (Levenshtein: insertions, deletions, substitutions) / reference
characters; WER the same over words (the normalised text split at spaces). Scores add up,
so pages and documents are micro-averaged: total edits over total reference length.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

from rapidfuzz.distance import Levenshtein

from models.render import PAGE_BREAK
from models.result import OCRResult


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def words(text: str) -> list[str]:
    return normalise(text).split()


@dataclass(frozen=True)
class Score:
    """Edits and reference lengths of one page or many; ``a + b`` scores both together."""

    char_edits: int = 0
    chars: int = 0
    word_edits: int = 0
    words: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(self.char_edits + other.char_edits, self.chars + other.chars,
                     self.word_edits + other.word_edits, self.words + other.words)

    @property
    def cer(self) -> float:
        return _rate(self.char_edits, self.chars)

    @property
    def wer(self) -> float:
        return _rate(self.word_edits, self.words)


def _rate(edits: int, length: int) -> float:
    # An empty reference: a reading that is empty too is right, anything else is all wrong.
    return edits / length if length else float(edits > 0)


def score(reference: str, reading: str) -> Score:
    ref, hyp = normalise(reference), normalise(reading)
    ref_words, hyp_words = ref.split(), hyp.split()
    return Score(Levenshtein.distance(ref, hyp), len(ref),
                 Levenshtein.distance(ref_words, hyp_words), len(ref_words))


def score_result(result: OCRResult, truth: list[str | None] | None) -> Score | None:
    """A read document against its true pages (by page index; None: that page has no true
    text); None when no page read has one. A page that failed scores as if nothing was
    read: its whole reference is errors. Pages the truth does not reach are not scored, and
    true pages not read are left out, so a page range scores against the whole document's
    truth."""
    if truth is None:
        return None
    scored = [score(truth[page.index], "" if page.error else page.text)
              for page in result.pages if page.index < len(truth) and truth[page.index] is not None]
    return sum(scored, Score()) if scored else None


def split_pages(truth: str) -> list[str]:
    """True text → its pages, split at form feeds as ``cli.py ocr`` writes them; a form feed
    at the very end ends the last page rather than starting an empty one."""
    pages = truth.split(PAGE_BREAK)
    if len(pages) > 1 and not pages[-1].strip():
        pages.pop()
    return pages


@dataclass(frozen=True)
class DiffOp:
    """A run of words: the same on both sides, or only left, only right, or replaced."""

    tag: Literal["equal", "insert", "delete", "replace"]
    left: list[str]
    right: list[str]


def word_diff(left: str, right: str) -> list[DiffOp]:
    """The word-level edits that turn ``left`` (e.g. the truth, or the first reading) into
    ``right``, in order, after normalisation."""
    a, b = words(left), words(right)
    return [DiffOp(op.tag, a[op.src_start:op.src_end], b[op.dest_start:op.dest_end])
            for op in Levenshtein.opcodes(a, b)]
