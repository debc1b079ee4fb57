"""Reading in one call: ``POST /v1/ocr`` (a small document, waited for) and ``POST /v1/chat``
(a question about a page).

``/v1/ocr`` is a job like any other — queued model by model, kept, counted against the
limits — that the request waits for up to ``api.ocr_wait_s``; a document past
``api.ocr_max_pages`` belongs in ``/v1/jobs`` (413), and one still being read when the wait
ends is answered 202 with the job to poll, so no request holds a connection for long.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from managers import runs
from managers.jobs.intake import check_size
from models.document import open_document
from models.errors import ConfigError
from models.i18n import _
from models.jobs import DONE
from routes.auth import owner
from routes.errors import answer, language
from routes.jobs import Files, Mode, Model, ReadForm, accept, changes, describe, next_change, uploads
from routes.results import check_format, result_file

router = APIRouter(prefix="/v1", tags=["reading"])
# The wait wakes when its job changes; it also looks this often (a change from elsewhere).
WAIT_POLL_S = 0.5


@router.post("/ocr", summary="Read a small document in one call",
             responses={202: {"description": "Still being read when api.ocr_wait_s ended: the job to poll."},
                        413: {"description": "More pages than api.ocr_max_pages: send it to /v1/jobs."}})
async def ocr(request: Request, files: Files, form: Annotated[ReadForm, Depends()],
              format: Annotated[str, Form(description="json, md, txt, xlsx, docx, csv or pdf.")] = "json",
              who: str = Depends(owner)):
    """Read a small document (at most api.ocr_max_pages pages) and answer with the result in
    ``format``, as GET /v1/jobs/{id}/result would. It is a job like any other: when it is not
    read within api.ocr_wait_s the answer is 202 with the job, to poll or follow. A job that
    fails answers 502 with its error in one sentence."""
    state, lang = request.app.state, language(request)
    check_format(format)  # before the reading, not after it
    job = await accept(request, who, files, form, state.config.api.ocr_max_pages)
    deadline = time.monotonic() + state.config.api.ocr_wait_s
    with changes(state.jobs, job.id) as changed:
        job = await run_in_threadpool(state.jobs.get, who, job.id)  # it may have ended before the watch
        while not job.final and (left := deadline - time.monotonic()) > 0:
            await next_change(changed, min(left, WAIT_POLL_S))
            job = await run_in_threadpool(state.jobs.get, who, job.id)
    if not job.final:
        return JSONResponse(describe(job, lang), 202, headers={"Location": f"/v1/jobs/{job.id}"})
    if job.state != DONE:
        message = job.error or _("The job was cancelled before it ended.")
        return answer(502, "job_failed", message, lang, {"Location": f"/v1/jobs/{job.id}"})
    results = await run_in_threadpool(state.jobs.results, who, job.id)
    made = await run_in_threadpool(result_file, state.config, state.jobs, job, results, format, lang)
    return Response(made.data, media_type=made.mime, headers={"X-Job-Id": job.id})


@router.post("/chat", summary="Ask about a page")
async def chat(request: Request,
               file: Annotated[UploadFile, File(description="The document: an image or a PDF.")],
               question: Annotated[str, Form(description="The question about the page.")],
               model: Model, mode: Mode = None,
               page: Annotated[int, Form(description="The page asked about, 1-based.")] = 1,
               history: Annotated[str, Form(description="Earlier turns as a JSON list of [question, answer] "
                                                        "pairs.")] = "[]",
               who: str = Depends(owner)):
    """Ask a model about one page of a document; answers {"answer": …, "model": …}. Errors are
    one sentence: a page outside the document or a malformed history (422), a model that
    cannot run here (503), an endpoint that fails (502)."""
    state = request.app.state
    config = state.config
    turns = chat_turns(history)
    (name, data), = await uploads([file])
    check_size(config, [(name, data)])

    def admit() -> bool:
        with state.chats.lock:  # counted with the key's unfinished jobs, against api.per_key_jobs
            return state.chats.take(who, config.api.per_key_jobs - state.jobs.store.unfinished(who))

    if not await run_in_threadpool(admit):
        raise state.jobs.owner_busy()
    try:
        def ask() -> str:
            document = open_document(data, name, config.limits)
            if not 1 <= page <= document.page_count:
                raise ConfigError(_("Page {page} is outside the document's 1-{count}.", page=page,
                                    count=document.page_count))
            choice = runs.Choice(model, mode or None)
            return runs.chat(state.runtime, choice, document.page(page - 1).image, turns, question)

        reply = await run_in_threadpool(ask)
    finally:
        state.chats.give(who)
    return {"answer": reply, "model": model}


def chat_turns(history: str) -> list[tuple[str, str]]:
    """The earlier turns as the engines take them, (role, text), as the app keeps them; each
    pair checked whole, so a string or an object is not taken apart into a question and an
    answer."""
    try:
        pairs = json.loads(history)
    except ValueError:
        pairs = None
    if not isinstance(pairs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(text, str) for text in pair)
            for pair in pairs):
        raise ConfigError(_("history must be a JSON list of [question, answer] pairs."))
    return [turn for question, answer in pairs for turn in (("user", question), ("assistant", answer))]


class Chats:
    """Chats in flight per API key. A chat is no job, but it counts against the key's
    api.per_key_jobs together with its unfinished jobs: ``lock`` is held while either is
    admitted, so a chat and a job that arrive together cannot both take the last place."""

    def __init__(self):
        self.lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def count(self, who: str) -> int:
        return self._counts.get(who, 0)

    def take(self, who: str, room: int) -> bool:
        """Count a chat of ``who`` when ``room`` is left; called with ``lock`` held."""
        if self.count(who) >= room:
            return False
        self._counts[who] = self.count(who) + 1
        return True

    def give(self, who: str) -> None:
        with self.lock:
            self._counts[who] -= 1
