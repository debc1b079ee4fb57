"""Tables in a result as data, parsed once: HTML tables (dots.ocr's Table cells, Qwen-VL's
"qwenvl html" answers) and Markdown pipe tables (any model's Markdown).

HTML is parsed by lxml and its cells laid on a grid here rather than read by
``pandas.read_html``: pandas repeats a spanned cell's text at every position it covers,
turns header rows into column labels and re-types cells ("007" becomes 7), and the spans
are needed anyway to merge the cells again in Word and Excel. Markdown is parsed by
markdown-it-py (CommonMark with its table extension).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import lxml.html
from markdown_it import MarkdownIt
from markdown_it.token import Token

from models.numbers import cell_value
from models.result import OCRResult

MARKDOWN = MarkdownIt("commonmark").enable("table")
MAX_SPAN = 1000  # browsers cap colspan here too; a model's runaway span must not blow up a sheet


@dataclass(frozen=True)
class Merge:
    """A cell spanning more than one grid position, its first position at (row, col)."""

    row: int
    col: int
    rows: int
    cols: int


@dataclass(frozen=True)
class Grid:
    # The cells as written, a spanned cell's text once at its first position and "" elsewhere.
    cells: list[list[str]]
    merges: list[Merge]

    @property
    def rows(self) -> list[list[str | Decimal]]:
        """The cells with numbers typed as numbers (see models.numbers)."""
        return [[cell_value(cell) for cell in row] for row in self.cells]


@dataclass(frozen=True)
class Table(Grid):
    page: int  # 0-based index of its page in the result
    number: int  # 1-based among the tables of its page

    @property
    def name(self) -> str:
        return f"p{self.page + 1} t{self.number}"


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


def find(text: str) -> list[Grid]:
    """Every table in Markdown (with HTML in it) or in HTML, in reading order."""
    tokens = parse_markdown(text)
    grids: list[Grid] = []
    for i, token in enumerate(tokens):
        if is_html(token):
            grids += from_html(token.content)
        elif token.type == "table_open":
            grids.append(from_tokens(tokens[i:]))
    return grids


def segments(text: str) -> list[str | Grid]:
    """The Markdown cut at its tables, in reading order: the text between them as Markdown,
    each table as a Grid — so a view shows tables as tables and never a model's raw HTML."""
    lines = text.splitlines(keepends=True)
    tokens = parse_markdown(text)
    out: list[str | Grid] = []
    start = 0
    for i, token in enumerate(tokens):
        if token.level != 0 or token.map is None:
            continue
        if is_html(token):
            grids = from_html(token.content)
        elif token.type == "table_open":
            grids = [from_tokens(tokens[i:])]
        else:
            continue
        if not grids:
            continue
        first, last = token.map
        if first > start:
            out.append("".join(lines[start:first]))
        out.extend(grids)
        start = last
    if start < len(lines):
        out.append("".join(lines[start:]))
    return out


def of_result(result: OCRResult) -> list[Table]:
    """Every table of the result, in page order."""
    return [Table(grid.cells, grid.merges, page.index, n)
            for page in result.pages for n, grid in enumerate(find(page.markdown), start=1)]


def from_tokens(tokens: list[Token]) -> Grid:
    """The pipe table whose ``table_open`` token starts ``tokens``."""
    cells: list[list[str]] = []
    for token in tokens[1:]:
        if token.type == "table_close":
            break
        if token.type == "tr_open":
            cells.append([])
        elif token.type == "inline":
            cells[-1].append(inline_text(token))
    return Grid(cells, [])  # markdown-it already pads short rows and cuts long ones


def inline_text(token: Token) -> str:
    """The text of an inline token without its Markdown markup."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


def from_html(html: str) -> list[Grid]:
    if "<table" not in html.lower():
        return []
    root = lxml.html.document_fromstring(html)
    return [grid for table in root.xpath("//table[not(ancestor::table)]") if (grid := from_element(table))]


def from_element(table: lxml.html.HtmlElement) -> Grid | None:
    """An HTML table on its grid; None when it has no rows."""
    for br in table.iter("br"):
        br.tail = "\n" + (br.tail or "")  # "Итого<br>с НДС" must not read "Итогос НДС"
    rows = table.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr")
    placed: dict[tuple[int, int], str] = {}
    merges = []
    for r, tr in enumerate(rows):
        c = 0
        for td in tr.xpath("./td|./th"):
            while (r, c) in placed:
                c += 1  # covered by a rowspan from above
            down = min(_span(td, "rowspan"), len(rows) - r)
            across = 1
            while across < _span(td, "colspan") and (r, c + across) not in placed:
                across += 1  # malformed HTML: a colspan stops where a rowspan from above lies
            for dr in range(down):
                for dc in range(across):
                    placed[(r + dr, c + dc)] = ""
            placed[(r, c)] = " ".join(td.text_content().split())
            if down > 1 or across > 1:
                merges.append(Merge(r, c, down, across))
            c += across
    if not placed:
        return None
    width = max(c for _, c in placed) + 1
    return Grid([[placed.get((r, c), "") for c in range(width)] for r in range(len(rows))], merges)


def _span(td: lxml.html.HtmlElement, name: str) -> int:
    try:
        return min(max(int(td.get(name, "1")), 1), MAX_SPAN)
    except ValueError:
        return 1

