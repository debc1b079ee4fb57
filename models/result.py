"""The one result contract every engine returns; the JSON export is this model as it is.

    {model, engine, task, seconds,
     pages: [{index, width, height, seconds, error, warnings, text, markdown,
              blocks: [{bbox: [x1, y1, x2, y2] in prepared-page pixels, category, text},
              source, elements}]}

``elements`` is the page's content as typed blocks (models/elements.py): paragraph, heading,
list, table, formula, code, picture. ``text`` and ``markdown`` are rendered from them.

The fields task adds ``template`` and ``fields`` (one checked value per template field,
models/fields/result.py) to the run, and ``fields`` (the values found there) to each page.

``source`` says what a page's text was read from: "image" (the page's pixels, by the model
or OCR) or "text layer" (the PDF's own text, models/text_layer.py); runs kept before it
existed read as "image".
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from models import structure
from models.elements import Element
from models.fields.result import FieldResult, FoundValue
from models.i18n import Message


class Block(BaseModel):
    bbox: tuple[int, int, int, int]
    category: str = "Text"
    text: str = ""

    @field_validator("bbox")
    @classmethod
    def _ordered(cls, bbox: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = bbox
        return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


class PageResult(BaseModel):
    index: int = Field(description="0-based position of the page in the document")
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    # Messages: English text in the JSON export; see Message._serialize for the other forms.
    error: Message | None = None
    warnings: list[Message] = []
    text: str = ""
    markdown: str = ""
    blocks: list[Block] = []
    source: Literal["image", "text layer"] = "image"
    # The page's content as typed blocks; text and markdown are rendered from them.
    elements: list[Element] = []
    # The fields task: the template's values this page shows (models/fields/).
    fields: list[FoundValue] = []

    @model_validator(mode="after")
    def _typed(self) -> PageResult:
        """A page kept before typed blocks existed (an old history row) gets them from what it
        holds: its layout cells where it has them, else its Markdown."""
        if "elements" not in self.model_fields_set and not self.error:
            if any(block.category != "Text" for block in self.blocks):
                self.elements = structure.from_layout(self.blocks)[0]
            elif self.markdown.strip():
                self.elements = structure.from_markdown(self.markdown)[0]
        return self

    @property
    def number(self) -> int:
        """1-based page number, as people count pages."""
        return self.index + 1


class OCRResult(BaseModel):
    model: str
    engine: str
    task: str
    seconds: float = 0.0
    pages: list[PageResult] = []
    # The fields task: its template, and one checked value per field over all pages.
    template: str | None = None
    fields: list[FieldResult] = []

    @property
    def failed(self) -> list[PageResult]:
        return [p for p in self.pages if p.error]
