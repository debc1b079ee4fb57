"""Tables as typed grids (models/elements.Table), parsed once where an answer is parsed: HTML
tables (dots.ocr's Table cells, Qwen-VL's "qwenvl html" answers) and Markdown pipe tables.

HTML is parsed by lxml and its cells laid on a grid here rather than read by
``pandas.read_html``: pandas repeats a spanned cell's text at every position it covers,
turns header rows into column labels and re-types cells ("007" becomes 7), and the spans
are needed anyway to merge the cells again in Word and Excel. Markdown is parsed by
markdown-it-py (CommonMark with its table extension).

A model's table is bounded: spans and the grid are capped at ``MAX_ROWS`` × ``MAX_COLUMNS``
(a page holds far fewer), and a table that was cut says so, so 20 cells with colspan 1000 make
a 100-column table and a warning, not a 20 000-column sheet.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lxml.etree
import lxml.html
from markdown_it import MarkdownIt
from markdown_it.token import Token

from models.elements import Merge, Table
from models.i18n import Message, _

if TYPE_CHECKING:
    from models.result import OCRResult

MARKDOWN = MarkdownIt("commonmark").enable("table")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
# HTML elements whose end is a line's end: their text must not run into the next one's
LINE_ENDS = {"p", "div", "li", "tr", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
             "section", "article", "header", "footer", "table", "ul", "ol", "dl", "caption", "td", "th"}
MAX_ROWS = 1000
MAX_COLUMNS = 100


@dataclass(frozen=True)
class PageTable:
    """A table of a result with where it stands: for sheet and file names."""

    table: Table
    page: int  # 0-based index of its page in the result
    number: int  # 1-based among the tables of its page

    @property
    def name(self) -> str:
        return f"p{self.page + 1} t{self.number}"


def of_result(result: OCRResult) -> list[PageTable]:
    """Every table of the result, in page order, as the pages hold them (nothing is parsed)."""
    return [PageTable(table, page.index, n) for page in result.pages
            for n, table in enumerate((e for e in page.elements if e.type == "table"), start=1)]


def parse_markdown(text: str) -> list[Token]:
    """Block tokens of ``text``, consecutive HTML blocks joined into one: a blank line inside
    a model's HTML table would otherwise cut the table in two."""
    tokens: list[Token] = []
    for token in MARKDOWN.parse(text):
        if token.type == "html_block" and tokens and tokens[-1].type == "html_block":
            joined = [tokens[-1].map[0], token.map[1]] if tokens[-1].map and token.map else None
            tokens[-1] = tokens[-1].copy(content=tokens[-1].content + token.content, map=joined)
        else:
            tokens.append(token)
    return tokens


def is_html(token: Token) -> bool:
    """An HTML block, or a fenced one: Qwen-VL often wraps its "qwenvl html" answer in ```html."""
    return token.type == "html_block" or (token.type == "fence" and token.info.strip().lower() == "html")


def from_tokens(tokens: list[Token], start: int = 0) -> tuple[Table, list[Message]]:
    """The pipe table whose ``table_open`` token is ``tokens[start]``."""
    cells: list[list[str]] = []
    for token in itertools.islice(tokens, start + 1, None):
        if token.type == "table_close":
            break
        if token.type == "tr_open":
            cells.append([])
        elif token.type == "inline":
            cells[-1].append(" ".join(inline_text(token).split()))
    # markdown-it already pads short rows and cuts long ones to the header's width
    rows, columns = len(cells), len(cells[0]) if cells else 0
    cells = [row[:MAX_COLUMNS] for row in cells[:MAX_ROWS]]
    return Table(cells=cells), _cut(rows, columns)


def inline_text(token: Token, breaks: str = " ") -> str:
    """The text of an inline token without its Markdown markup. A link or an image keeps its
    address as text after it — shown, never followed or loaded; ``breaks``: what a line break
    becomes."""
    parts, links = [], []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak") or (child.type == "html_inline" and _BR.match(child.content)):
            parts.append(breaks)
        elif child.type == "link_open":
            links.append(_address(str(child.attrs.get("href", ""))))
        elif child.type == "link_close" and links and (href := links.pop()):
            parts.append(f" ({href})")
        elif child.type == "image":
            alt = "".join(grand.content for grand in child.children or [])
            parts.append(f"{alt} ({_address(str(child.attrs.get('src', '')))})".strip())
    return "".join(parts)


def _address(url: str) -> str:
    """A URL as text to show; a data URL is bytes, not an address: only its type is kept."""
    if url.startswith("data:"):
        return url.split(",", 1)[0][:60] + ",…"
    return url[:500]


def from_html(html: str) -> tuple[list[Table], list[Message]]:
    if "<table" not in html.lower():
        return [], []
    try:
        root = lxml.html.document_fromstring(html)
    except lxml.etree.ParserError:
        return [], []
    found, warnings = [], []
    for element in root.xpath("//table[not(ancestor::table)]"):
        table, cut = from_element(element)
        if table is not None:
            found.append(table)
            warnings += cut
    return found, warnings


def from_element(table: lxml.html.HtmlElement) -> tuple[Table | None, list[Message]]:
    """An HTML table on its grid, cut to MAX_ROWS × MAX_COLUMNS; None when it has no rows."""
    rows = table.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr")
    kept = rows[:MAX_ROWS]
    placed: dict[tuple[int, int], str] = {}
    merges = []
    widest = 0
    for r, tr in enumerate(kept):
        c = 0
        tds = tr.xpath("./td|./th")
        widest = max(widest, sum(_span(td, "colspan") for td in tds))  # as the answer meant it
        for td in tds:
            while (r, c) in placed:
                c += 1  # covered by a rowspan from above
            wanted = _span(td, "colspan")
            if c >= MAX_COLUMNS:
                c += wanted
                continue
            down = min(_span(td, "rowspan"), len(kept) - r)
            across = 1
            while across < min(wanted, MAX_COLUMNS - c) and (r, c + across) not in placed:
                across += 1  # malformed HTML: a colspan stops where a rowspan from above lies
            for dr in range(down):
                for dc in range(across):
                    placed[(r + dr, c + dc)] = ""
            placed[(r, c)] = " ".join(text_of(td).split())
            if down > 1 or across > 1:
                merges.append(Merge(row=r, col=c, rows=down, cols=across))
            c += across
    if not placed:
        return None, []
    width = max(c for _, c in placed) + 1
    cells = [[placed.get((r, c), "") for c in range(width)] for r in range(len(kept))]
    return Table(cells=cells, merges=merges), _cut(len(rows), widest)


def text_of(element: lxml.html.HtmlElement) -> str:
    """An element's text with a line break where a <br> or a block ends, so "Итого<br>с НДС" or
    <p>a</p><p>b</p> never run together ("Итогос НДС", "ab")."""
    parts: list[str] = []

    def walk(node: lxml.html.HtmlElement) -> None:
        if not isinstance(node.tag, str):  # a comment or a processing instruction
            parts.append(node.tail or "")
            return
        parts.append("\n" if node.tag == "br" else node.text or "")
        for child in node:
            walk(child)
        if node.tag in LINE_ENDS:
            parts.append("\n")
        if node is not element:
            parts.append(node.tail or "")

    walk(element)
    return "".join(parts)


def _cut(rows: int, columns: int) -> list[Message]:
    if rows <= MAX_ROWS and columns <= MAX_COLUMNS:
        return []
    return [_("A table of {rows}×{columns} cells was cut to its first {max_rows} rows and {max_columns} "
              "columns.", rows=rows, columns=columns, max_rows=min(rows, MAX_ROWS),
              max_columns=min(columns, MAX_COLUMNS))]


def _span(td: lxml.html.HtmlElement, name: str) -> int:
    try:
        return min(max(int(td.get(name, "1")), 1), max(MAX_ROWS, MAX_COLUMNS) + 1)
    except ValueError:
        return 1
