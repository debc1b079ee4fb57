"""Comparing and evaluating in the app: an evaluation (managers/evaluation.py) run in a
thread of its own for one session, so a click elsewhere never stops it, with its progress
and its runs kept in the history like any other reading."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from managers.evaluation import Evaluation, Sample, evaluate
from managers.history import keep
from managers.runs import Choice
from models.errors import ChatVLMError
from models.i18n import Message, _, n_

if TYPE_CHECKING:
    from managers.runtime import Runtime

log = logging.getLogger(__name__)


def align_truth(pages: list[str], page_count: int, indexes: list[int]) -> tuple[list[str | None], Message | None]:
    """The true text a person gave, page by page of the document (None: not scored), and a
    sentence when it had to be matched. As many pages as the document: page for page.
    Otherwise it is the text of the pages chosen, in order, which is what a person pastes
    for one page of a long document; pages it does not reach are not scored."""
    if len(pages) == page_count:
        return list(pages), None
    truth: list[str | None] = [None] * page_count
    for index, text in zip(indexes, pages):
        truth[index] = text
    if len(pages) == len(indexes):
        return truth, None
    return truth, _("{given} and {read}: they are matched in order, and pages without true text are not scored.",
                    given=n_("The true text has {n} page", "The true text has {n} pages", len(pages)),
                    read=n_("{n} page is read", "{n} pages are read", len(indexes)))


class EvaluationJob:
    """Every choice reads every sample, one model after another (one switch per model).
    Progress: ``status`` (the switch or load under way), ``model`` (the label of the choice
    reading, with its number ``step`` of ``len(choices)``), ``document``, and ``done`` of
    ``total`` pages of it. When it ends: ``evaluation``, or ``error`` if it could not start."""

    def __init__(self, runtime: Runtime, choices: list[Choice], samples: list[Sample]):
        self.choices, self.samples = choices, samples
        self.cancel = threading.Event()
        self.status, self.model, self.document = Message(""), "", ""
        self.step, self.done, self.total = 0, 0, 0
        self.evaluation: Evaluation | None = None
        self.error: Message | None = None
        self.history_warning: Message | None = None
        self._thread = threading.Thread(target=self._run, args=(runtime,), name="evaluation", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _on_read(self, choice: Choice, sample: Sample):
        # By its place in the list: two tasks of one model are two steps, and a model that
        # could not be made ready (never read) still counts.
        self.step = self.choices.index(choice) + 1 if choice in self.choices else self.step + 1
        self.model, self.document = choice.key, sample.name
        self.done, self.total, self.status = 0, len(sample.pages()), Message("")
        return lambda done, total, page: setattr(self, "done", done)

    def _run(self, runtime: Runtime) -> None:
        try:
            self.evaluation = evaluate(runtime, self.choices, self.samples, cancel=self.cancel,
                                       on_event=lambda event: setattr(self, "status", event.message),
                                       on_read=self._on_read)
        except ChatVLMError as exc:
            self.error = exc.message
            return
        except Exception as exc:  # a bug must still end the job with a sentence, not silently
            log.exception("evaluation failed")
            self.error = _("The comparison failed unexpectedly: {reason}", reason=exc)
            return
        for model in self.evaluation.models:
            for row in model.rows:
                if row.error is None:
                    self.history_warning = keep(runtime.history, row.run, row.sample.name,
                                                row.sample.document.data) or self.history_warning
