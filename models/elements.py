"""A page's content as typed blocks, made once where a model's answer is parsed
(models/structure.py) and rendered from there into every format and view — the way Docling's
DoclingDocument keeps one model of the data and many renderers.

Text is kept as written: a table cell's "1.10" stays "1.10", a paragraph keeps its line breaks.
Nothing here holds bytes from an answer: a picture is a box on the page, cropped from the page
itself when it is shown or exported. ``bbox`` is in original-page pixels where the engine gave
one (layout models, Tesseract), else None.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field

Box = tuple[int, int, int, int]
# What a paragraph is on the page; "header"/"footer" ones are the page's running lines.
Role = Literal["body", "caption", "footnote", "header", "footer"]


class Paragraph(BaseModel):
    type: Literal["paragraph"] = "paragraph"
    text: str
    role: Role = "body"
    bbox: Box | None = None


class Heading(BaseModel):
    type: Literal["heading"] = "heading"
    text: str
    level: int = Field(1, ge=1, le=6)
    bbox: Box | None = None


class ListItem(BaseModel):
    text: str
    level: int = Field(0, ge=0, description="nesting depth, 0 for the outermost list")
    marker: str = Field("", description='the item\'s mark as written: "3.", "-", "•"; "" when none was')


class ListBlock(BaseModel):
    type: Literal["list"] = "list"
    items: list[ListItem]
    ordered: bool = False
    bbox: Box | None = None


class Merge(BaseModel):
    """A cell spanning more than one grid position, its first position at (row, col)."""

    row: int
    col: int
    rows: int
    cols: int


class Table(BaseModel):
    type: Literal["table"] = "table"
    # Every row as long as the widest; a spanned cell's text once, at its first position.
    cells: list[list[str]]
    merges: list[Merge] = []
    bbox: Box | None = None

    @property
    def width(self) -> int:
        return len(self.cells[0]) if self.cells else 0


class Formula(BaseModel):
    type: Literal["formula"] = "formula"
    latex: str
    bbox: Box | None = None


class Code(BaseModel):
    type: Literal["code"] = "code"
    text: str
    bbox: Box | None = None


class Picture(BaseModel):
    type: Literal["picture"] = "picture"
    bbox: Box


Element = Annotated[Union[Paragraph, Heading, ListBlock, Table, Formula, Code, Picture],
                    Field(discriminator="type")]
