"""Tesseract 5 on the CPU: the embedded default engine, offline, no GPU.

The binary is run directly (argument list, no shell) with TSV output, which carries
word boxes grouped into blocks, paragraphs and lines; each line becomes a Text block.

Every core: one single-threaded process per page, ``concurrency`` pages at once. Tesseract's
own OpenMP threads fight over the cores instead (one A4 page ~3.0 s with them, ~1.1 s with
OMP_THREAD_LIMIT=1 on 2 cores). ``abort`` kills the processes in flight (Cancel).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import threading
from functools import cache

from models import render, structure
from models.config import FieldsTask, ModelConfig, Task
from models.document import Page
from models.engine import Engine, not_read
from models.errors import EngineError, NotAvailable
from models.fields import rules
from models.i18n import Message, _
from models.result import Block, PageResult
from models.text_layer import TextSpan, Use, check, text_of

INSTALL_HINT = "sudo apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus"
# A page that takes longer than this is stuck, not slow.
PAGE_TIMEOUT_S = 300


def single_threaded_env() -> dict[str, str]:
    """The environment for a Tesseract process: one thread, since pages run side by side."""
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


@cache
def installed_languages() -> frozenset[str]:
    exe = shutil.which("tesseract")
    if exe is None:
        raise NotAvailable(_("Tesseract is not installed — install it with: {command}", command=INSTALL_HINT))
    out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30)
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def check_languages(languages: list[str]) -> None:
    missing = [lang for lang in languages if lang not in installed_languages()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
        raise NotAvailable(_("Tesseract lacks the language data {languages} — install it with: "
                             "sudo apt-get install {packages}", languages=", ".join(missing), packages=packages))


class TesseractEngine(Engine):
    engine_name = "tesseract"

    def __init__(self, key: str, model: ModelConfig, workers: int = 1):
        super().__init__(key, model)
        assert model.cpu is not None
        self.cpu = model.cpu
        self.concurrency = workers
        check_languages(self.cpu.languages)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._aborted = False

    def abort(self) -> None:
        """Kill every page in flight; this engine reads no more pages after it."""
        with self._lock:
            self._aborted = True
            for process in self._running:
                process.kill()

    def fields_not_found(self, task: FieldsTask) -> dict[str, Message]:
        return rules.cannot_find(task.template)

    def read_page(self, page: Page, task: Task) -> PageResult:
        """Page ``page`` as text; the fields task reads it alike, then finds the template's
        values in its lines by the template's rules (models/fields/rules.py)."""
        paragraphs, warnings, source = self._lines(page)
        result = _result(page, paragraphs, warnings, source)
        if isinstance(task, FieldsTask):
            result.fields = rules.find(task.template, [line for para in paragraphs for line in para], page.index)
        return result

    def _lines(self, page: Page) -> tuple[list[list[TextSpan]], list[Message], str]:
        """Page ``page``'s lines by OCR, or from the PDF's own text where models/text_layer.py
        finds it covers the page; the warnings say which, and why a layer was not used."""
        number = page.index + 1
        if page.text_layer and not page.text_layer_hidden:
            note = _("Page {page} was read from the PDF's own text layer, not by OCR.", page=number)
            return page.text_layer, [note], "text layer"
        reading = self._recognise(page)
        if page.text_layer:  # an invisible OCR layer: kept where the reading agrees with it
            verdict = check(text_of(page.text_layer), text_of(reading), number)
            if verdict.use is Use.LAYER:
                return page.text_layer, [verdict.note], "text layer"
            return reading, [verdict.note], "image"
        return reading, [page.text_layer_note] if page.text_layer_note else [], "image"

    def _recognise(self, page: Page) -> list[list[TextSpan]]:
        buf = io.BytesIO()
        (page.ocr_image or page.image).save(buf, format="PNG", compress_level=1)
        cmd = ["tesseract", "stdin", "stdout", "-l", "+".join(self.cpu.languages),
               "--psm", str(self.cpu.psm), "tsv"]
        stdout, stderr, code = self._run(cmd, buf.getvalue(), page.index)
        if code != 0:
            detail = stderr.decode(errors="replace").strip().splitlines()
            if not detail:
                raise EngineError(_("Tesseract failed on page {page}: exit code {code}.",
                                    page=page.index + 1, code=str(code)))
            raise EngineError(_("Tesseract failed on page {page}: {reason}.", page=page.index + 1, reason=detail[-1]))
        paragraphs = parse_tsv(stdout.decode("utf-8", errors="replace"))
        return _scaled(paragraphs, page.ocr_scale, page.image.size) if page.ocr_scale != 1 else paragraphs

    def _run(self, cmd: list[str], data: bytes, index: int) -> tuple[bytes, bytes, int]:
        with self._lock:  # registered before abort() can miss it, or refused after
            if self._aborted:
                raise EngineError(not_read(index).error)
            process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=single_threaded_env())
            self._running.add(process)
        try:
            stdout, stderr = process.communicate(data, timeout=PAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise EngineError(_("Tesseract took over {seconds} s on page {page} and was stopped.",
                                seconds=PAGE_TIMEOUT_S, page=index + 1)) from None
        finally:
            with self._lock:
                self._running.discard(process)
        if self._aborted:
            raise EngineError(not_read(index).error)
        return stdout, stderr, process.returncode


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
            TextSpan(box, " ".join(w[4] for w in ws), tuple(TextSpan(w[:4], w[4]) for w in ws)))
    return list(paragraphs.values())


def _scaled(paragraphs: list[list[TextSpan]], scale: float, size: tuple[int, int]) -> list[list[TextSpan]]:
    """Boxes found on an enlarged copy, in pixels of the page itself."""
    width, height = size

    def back(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (round(v / scale) for v in box)
        return min(x0, width), min(y0, height), min(x1, width), min(y1, height)
    return [[TextSpan(back(s.bbox), s.text, tuple(TextSpan(back(w.bbox), w.text) for w in s.words))
             for s in para] for para in paragraphs]


def _result(page: Page, paragraphs: list[list[TextSpan]], warnings: list[Message], source: str) -> PageResult:
    width, height = page.size
    elements = structure.from_lines([[(s.bbox, s.text) for s in para] for para in paragraphs])
    blocks = [Block(bbox=s.bbox, category="Text", text=s.text) for para in paragraphs for s in para]
    return PageResult(index=page.index, width=width, height=height, text=render.elements_text(elements),
                      markdown=render.elements_markdown(elements), elements=elements, blocks=blocks, warnings=warnings, source=source)
