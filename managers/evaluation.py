"""Which model reads these documents best: every choice of (model, mode, task) reads every
document through the document runner, scored against the document's true text where there
is one (models/metrics.py says how), and with the fields task against its true fields
(models/fields/score.py says how).

- Models run one after another, each over all documents: a model is made ready once (one
  switch or load), then reads document after document, and the runner, finding it ready,
  does not switch again. Documents in the outer loop would switch at every document.
- A model that cannot be made ready keeps its sentence and gets no score: it read nothing,
  and 100% would rank it beside a model that read everything wrong. The others still run.
- A document whose reading fails as a whole (e.g. the model was taken away) counts every
  page as failed, scored like any failed page: its whole reference is errors.
- Cancel stops the evaluation: documents read in full keep their rows; the one it
  interrupted is left out, since its pages not read would count as failures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from managers import runs
from managers.container_manager import OnEvent
from managers.runs import Choice, Run
from models.config import FIELDS, AppConfig, Limits
from models.document import EXTENSIONS, Document, PageRef, open_path
from models.engine import OnPage
from models.errors import ChatVLMError, InputError
from models.fields import score as fields_score
from models.fields.score import Counts, Truth
from models.fields.template import Template
from models.i18n import Message, _, n_
from models.metrics import Score, score_result, split_pages
from models.result import OCRResult, PageResult

if TYPE_CHECKING:
    from managers.runtime import Runtime


@dataclass(frozen=True)
class Sample:
    """A document to read, the pages to read (None: all), its true text page by page (by
    page index in the document; None: no truth, so read and timed, not scored), and its true
    fields for the fields task (None: none known)."""

    document: Document
    truth: list[str | None] | None = None
    indexes: list[int] | None = None
    fields: Truth | None = None

    @property
    def name(self) -> str:
        return self.document.name

    def pages(self) -> list[PageRef]:
        return self.document.pages(self.indexes)

    @property
    def note(self) -> Message | None:
        """Why some or all of its pages go unscored, for the tables."""
        if self.truth is None:
            return None if self.fields is not None else _("no truth: read and timed, not scored")
        if len(self.truth) != self.document.page_count:
            return n_("the truth has {n} page, the document {pages}: pages are matched in order, "
                      "pages without truth are not scored",
                      "the truth has {n} pages, the document {pages}: pages are matched in order, "
                      "pages without truth are not scored", len(self.truth), pages=self.document.page_count)
        return None


def _per_min(pages: int, seconds: float) -> float | None:
    return pages * 60 / seconds if seconds > 0 else None


@dataclass(frozen=True)
class Row:
    """One model on one document. ``error``: the reading failed as a whole (then ``run``
    holds every page as failed, and is not one to keep in the history)."""

    choice: Choice
    sample: Sample
    run: Run
    score: Score | None  # None: no page read has a true text
    error: Message | None = None
    fields: dict[str, Counts] | None = None  # by field name; None: no true fields or not that task

    @property
    def note(self) -> Message:
        if self.error and self.sample.note:
            return _("{error}; {note}", error=self.error, note=self.sample.note)
        return self.error or self.sample.note or Message("")

    @property
    def pages(self) -> int:
        return len(self.run.result.pages)

    @property
    def failed(self) -> int:
        return len(self.run.result.failed)

    @property
    def seconds(self) -> float:
        return self.run.result.seconds

    @property
    def pages_per_min(self) -> float | None:
        return _per_min(self.pages, self.seconds)


@dataclass
class ModelResult:
    """One choice over all documents; ``error``: it could not be made ready, so no rows."""

    choice: Choice
    rows: list[Row] = field(default_factory=list)
    error: Message | None = None

    @property
    def score(self) -> Score | None:
        """Micro-averaged over every scored page of every document."""
        scores = [row.score for row in self.rows if row.score is not None]
        return sum(scores, Score()) if scores else None

    @property
    def fields(self) -> dict[str, Counts] | None:
        """Per field, over every document with true fields; None where none has them."""
        scored = [row.fields for row in self.rows if row.fields is not None]
        if not scored:
            return None
        return {name: sum((counts[name] for counts in scored), Counts()) for name in scored[0]}

    @property
    def pages(self) -> int:
        return sum(row.pages for row in self.rows)

    @property
    def failed(self) -> int:
        return sum(row.failed for row in self.rows)

    @property
    def seconds(self) -> float:
        return sum(row.seconds for row in self.rows)

    @property
    def pages_per_min(self) -> float | None:
        return _per_min(self.pages, self.seconds)


@dataclass
class Evaluation:
    samples: list[Sample]
    models: list[ModelResult] = field(default_factory=list)
    cancelled: bool = False

    @property
    def failed(self) -> bool:
        """Whether any model could not be made ready or any page failed."""
        return any(m.error or m.failed for m in self.models)


def resolve(config: AppConfig, choice: Choice) -> Choice:
    """The choice with its mode and task filled in (the model's first where None); a model
    without that mode or task, or the fields task without a known template, is refused with a
    sentence, before anything runs."""
    mode = runs.check_mode(config, choice.key, choice.mode)
    if choice.task == FIELDS:
        config.template(choice.template)
        task = FIELDS
    else:
        task, _ = config.model(choice.key).task(choice.task)
    return Choice(choice.key, mode, task, choice.hide_header_footer, choice.box, choice.template)


def evaluate(runtime: Runtime, choices: list[Choice], samples: list[Sample], *,
             on_event: OnEvent | None = None,
             on_read: Callable[[Choice, Sample], OnPage | None] | None = None,
             cancel: threading.Event | None = None) -> Evaluation:
    """Read every sample with every choice, one model after another. ``on_event``: switch
    and load progress, as the runner gives it; ``on_read(choice, sample)``, called before
    each document, returns that reading's page callback (or None)."""
    choices = [resolve(runtime.config, choice) for choice in choices]
    cancel = cancel or threading.Event()
    evaluation = Evaluation(samples)
    for choice in choices:
        if cancel.is_set():
            break
        model = ModelResult(choice)
        try:
            runs.make_ready(runtime, choice.key, choice.mode, on_event, cancel)
        except ChatVLMError as exc:
            model.error = exc.message
        if cancel.is_set():
            break
        evaluation.models.append(model)
        if model.error:
            continue
        for sample in samples:
            row = _read(runtime, choice, sample, on_event, on_read, cancel)
            if cancel.is_set():
                break
            model.rows.append(row)
    evaluation.cancelled = cancel.is_set()
    return evaluation


def _read(runtime: Runtime, choice: Choice, sample: Sample, on_event: OnEvent | None,
          on_read: Callable[[Choice, Sample], OnPage | None] | None, cancel: threading.Event) -> Row:
    pages = sample.pages()
    error = None
    try:
        run = runs.read_document(runtime, choice, pages, on_page=on_read(choice, sample) if on_read else None,
                                 on_event=on_event, cancel=cancel)
    except ChatVLMError as exc:
        error = exc.message
        failed = [PageResult(index=page.index, error=error) for page in pages]
        run = Run(choice, OCRResult(model=choice.key, engine="", task=choice.task, pages=failed))
    fields = None
    if choice.task == FIELDS and sample.fields is not None:
        fields = fields_score.score_fields(runtime.config.template(choice.template), run.result, sample.fields)
    return Row(choice, sample, run, score_result(run.result, sample.truth), error, fields)


# --- a folder of documents with their true texts beside them -------------------------------

def read_truth(path: Path) -> list[str] | None:
    """The pages of a true text file (UTF-8, pages split by form feeds); None if there is none."""
    try:
        return split_pages(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise InputError(_("'{name}' is not UTF-8 text; save it as UTF-8 and run again.", name=path.name)) from None
    except OSError as exc:
        raise InputError(_("'{path}' cannot be read: {reason}.", path=str(path), reason=exc.strerror)) from None


def sample(document: Document, truth: list[str] | None, limits: Limits) -> Sample:
    """A document to evaluate, read whole: one longer than limits.max_pages is refused."""
    if document.page_count > limits.max_pages:
        raise InputError(_("'{name}' has {pages} pages, over the limit of {limit} (limits.max_pages).",
                           name=document.name, pages=document.page_count, limit=limits.max_pages))
    return Sample(document, truth)


def folder_samples(folder: Path, limits: Limits, skip: set[Path] = frozenset(),
                   template: Template | None = None) -> tuple[list[Sample], list[Message]]:
    """Every document in ``folder`` the intake opens (by name), each with ``NAME.txt`` beside
    it as its truth, and with a ``template``, ``NAME.fields.json`` as its true fields; and a
    sentence for each document that cannot be used. ``skip``: files that are not documents
    although they look like one (a chart written there before)."""
    if not folder.is_dir():
        raise InputError(_("'{folder}' is not a folder.", folder=str(folder)))
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in EXTENSIONS and p.resolve() not in skip)
    samples, errors = [], []
    for path in files:
        try:
            found = sample(open_path(path, limits), read_truth(path.with_suffix(".txt")), limits)
            if template is not None:
                found = replace(found, fields=fields_score.read_truth(path.with_suffix(".fields.json"), template))
            samples.append(found)
        except ChatVLMError as exc:
            errors.append(exc.message)
    return samples, errors
