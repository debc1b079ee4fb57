"""Tesseract 5 on the CPU: the embedded default engine, offline, no GPU.

The binary is run directly (argument list, no shell) with TSV output, which carries
word boxes grouped into blocks, paragraphs and lines; each line becomes a Text block.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from functools import cache

from models.config import ModelConfig, Task
from models.document import Page, TextSpan
from models.engine import Engine
from models.errors import EngineError, NotAvailable
from models.markdown import escape_line
from models.result import Block, PageResult

INSTALL_HINT = "sudo apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus"
# A page that takes longer than this is stuck, not slow.
PAGE_TIMEOUT_S = 300


@cache
def installed_languages() -> frozenset[str]:
    exe = shutil.which("tesseract")
    if exe is None:
        raise NotAvailable(f"Tesseract is not installed — install it with: {INSTALL_HINT}")
    out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30)
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def check_languages(languages: list[str]) -> None:
    missing = [lang for lang in languages if lang not in installed_languages()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
        raise NotAvailable(f"Tesseract lacks the language data {', '.join(missing)} — "
                           f"install it with: sudo apt-get install {packages}")


class TesseractEngine(Engine):
    engine_name = "tesseract"

    def __init__(self, key: str, model: ModelConfig):
        super().__init__(key, model)
        assert model.cpu is not None
        self.cpu = model.cpu
        check_languages(self.cpu.languages)

    def read_page(self, page: Page, task: Task) -> PageResult:
        width, height = page.size
        if page.text_layer:
            paragraphs = page.text_layer
            warnings = [f"Page {page.index + 1} was read from the PDF's own text layer, not by OCR."]
        else:
            paragraphs = self._recognise(page)
            warnings = []
        return _result(page.index, width, height, paragraphs, warnings)

    def _recognise(self, page: Page) -> list[list[TextSpan]]:
        buf = io.BytesIO()
        page.image.save(buf, format="PNG", compress_level=1)
        cmd = ["tesseract", "stdin", "stdout", "-l", "+".join(self.cpu.languages),
               "--psm", str(self.cpu.psm), "tsv"]
        try:
            done = subprocess.run(cmd, input=buf.getvalue(), capture_output=True,
                                  timeout=PAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EngineError(f"Tesseract took over {PAGE_TIMEOUT_S} s on page "
                              f"{page.index + 1} and was stopped.") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise EngineError(f"Tesseract failed on page {page.index + 1}: "
                              f"{detail[-1] if detail else f'exit code {done.returncode}'}.")
        return parse_tsv(done.stdout.decode("utf-8", errors="replace"))


def parse_tsv(tsv: str) -> list[list[TextSpan]]:
    """Tesseract TSV → paragraphs, each a list of lines with their boxes."""
    words: dict[tuple[int, int, int], list[tuple[int, int, int, int, str]]] = {}
    paragraph_of: dict[tuple[int, int, int], tuple[int, int]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row["level"] != "5" or not text or row["conf"] == "-1":
            continue
        line = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        left, top = int(row["left"]), int(row["top"])
        words.setdefault(line, []).append(
            (left, top, left + int(row["width"]), top + int(row["height"]), text))
        paragraph_of[line] = line[:2]
    paragraphs: dict[tuple[int, int], list[TextSpan]] = {}
    for line, ws in words.items():
        box = (min(w[0] for w in ws), min(w[1] for w in ws),
               max(w[2] for w in ws), max(w[3] for w in ws))
        paragraphs.setdefault(paragraph_of[line], []).append(
            TextSpan(box, " ".join(w[4] for w in ws)))
    return list(paragraphs.values())


def _result(index: int, width: int, height: int, paragraphs: list[list[TextSpan]],
            warnings: list[str]) -> PageResult:
    text = "\n\n".join("\n".join(s.text for s in para) for para in paragraphs)
    markdown = "\n\n".join("  \n".join(escape_line(s.text) for s in para) for para in paragraphs)
    blocks = [Block(bbox=s.bbox, category="Text", text=s.text) for para in paragraphs for s in para]
    return PageResult(index=index, width=width, height=height, text=text,
                      markdown=markdown, blocks=blocks, warnings=warnings)
