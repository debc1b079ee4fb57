"""Reading in one call: ``POST /v1/ocr`` (a small document, waited for) and ``POST /v1/chat``
(a question about a page).

``/v1/ocr`` is a job like any other — queued model by model, kept, counted against the
limits — that the request waits for up to ``api.ocr_wait_s``; a document past
``api.ocr_max_pages`` belongs in ``/v1/jobs`` (413), and one still being read when the wait
ends is answered 202 with the job to poll, so no request holds a connection for long.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from managers import runs
from models.document import open_document
from models.errors import ChatVLMError, ConfigError, Busy
from models.i18n import _, n_
from models.jobs import DONE
from routes.auth import owner
from routes.errors import answer, language
from routes.jobs import accept, describe, uploads
from routes.results import result_file

router = APIRouter(prefix="/v1", tags=["reading"])
WAIT_POLL_S = 0.05


@router.post("/ocr")
async def ocr(request: Request, files: list[UploadFile] = File(...), model: str = Form(...),
              mode: str | None = Form(None), task: str | None = Form(None), template: str | None = Form(None),
              pages: str | None = Form(None), hide_header_footer: bool = Form(False), format: str = Form("json"),
              who: str = Depends(owner)):
    """Read a small document and answer with the result (202 and the job when it takes longer)."""
    state, lang = request.app.state, language(request)
    job = await accept(request, who, files, model, mode, task, template, pages, hide_header_footer,
                       state.config.api.ocr_max_pages)
    deadline = time.monotonic() + state.config.api.ocr_wait_s
    while not job.final and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_S)
        job = await run_in_threadpool(state.jobs.get, who, job.id)
    if not job.final:
        return JSONResponse(describe(job, lang), 202, headers={"Location": f"/v1/jobs/{job.id}"})
    if job.state != DONE:
        message = job.error or _("The job was cancelled before it ended.")
        return answer(502, "job_failed", message, lang, {"Location": f"/v1/jobs/{job.id}"})
    made = await run_in_threadpool(result_file, state.config, state.jobs, job, state.jobs.results(who, job.id),
                                   format, lang)
    return Response(made.data, media_type=made.mime, headers={"X-Job-Id": job.id})


@router.post("/chat")
async def chat(request: Request, file: UploadFile = File(...), question: str = Form(...), model: str = Form(...),
               mode: str | None = Form(None), page: int = Form(1), history: str = Form("[]"),
               who: str = Depends(owner)):
    """Ask about one page of a document; ``history``: earlier turns as [[question, answer], …]."""
    state = request.app.state
    config = state.config
    try:
        turns = [(str(q), str(a)) for q, a in json.loads(history)]
    except (ValueError, TypeError):
        raise ConfigError(_("history must be a JSON list of [question, answer] pairs.")) from None
    (name, data), = await uploads([file], config.api.max_upload_mb)
    if not state.chats.take(who, config.api.per_key_jobs):
        raise Busy(n_("This API key has {n} chat in progress, its limit (api.per_key_jobs); wait for it to end.",
                      "This API key has {n} chats in progress, its limit (api.per_key_jobs); wait for one to end.",
                      config.api.per_key_jobs), config.api.retry_after_s)
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


class Chats:
    """Chats in flight per API key (jobs are counted by the store; a chat is no job)."""

    def __init__(self):
        self._counts: dict[str, int] = {}

    def take(self, who: str, limit: int) -> bool:
        if self._counts.get(who, 0) >= limit:
            return False
        self._counts[who] = self._counts.get(who, 0) + 1
        return True

    def give(self, who: str) -> None:
        self._counts[who] -= 1
