"""Jobs: submit documents, follow them, cancel them, download what was read.

    POST   /v1/jobs                 multipart files + model, mode, task, template, pages, box → 202
    GET    /v1/jobs/{id}            state, pages done of total, per-page errors
    GET    /v1/jobs/{id}/result     ?format=json|md|txt|… (the pages read so far, any state)
    GET    /v1/jobs/{id}/events     Server-Sent Events until the job ends
    DELETE /v1/jobs/{id}            cancel; pages read are kept
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from managers.jobs.intake import check_runs_here, documents_for, spec_for
from managers.jobs.store import Job
from models.errors import ConfigError
from models.i18n import Message, _
from models.jobs import INTERRUPTED, STATE_WORDS
from routes.auth import owner
from routes.errors import language
from routes.models import facts
from routes.results import result_file

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# A stream wakes when its job changes; it also looks this often, to notice a client gone.
EVENT_POLL_S = 0.25
EVENT_ID = re.compile(r"[0-9]{1,18}")  # below SQLite's largest INTEGER


def describe(job: Job, lang: str) -> dict:
    """A job as the API shows it."""
    page_errors = []
    return {
        "id": job.id,
        "state": job.state,
        "state_text": STATE_WORDS[job.state].render(lang),
        "model": job.spec.model, "mode": job.spec.mode, "task": job.spec.task, "template": job.spec.template, "box": job.spec.box,
        "pages_done": job.pages_done, "pages_total": job.pages_total,
        "documents": [{"name": d.name, "pages": [i + 1 for i in d.pages], "pages_done": d.done} for d in job.documents],
        "page_errors": page_errors,
        "error": job.error.render(lang) if job.error else None,
        "interruptions": job.interruptions,
        "worker": job.worker,
        "note": job.note.render(lang) if job.note else None,
        "created": job.created, "started": job.started, "finished": job.finished,
        "links": {"self": f"/v1/jobs/{job.id}", "result": f"/v1/jobs/{job.id}/result",
                  "events": f"/v1/jobs/{job.id}/events"},
    }


def with_page_errors(request: Request, job: Job, lang: str) -> dict:
    shown = describe(job, lang)
    jobs = request.app.state.jobs
    shown["page_errors"] = [
        {"document": d.name, "page": page.number, "error": page.error.render(lang)}
        for d in job.documents for page in jobs.store.pages(job.id, d.n).values() if page.error]
    return shown


@contextlib.contextmanager
def changes(jobs, job_id: str) -> Iterator[asyncio.Event]:
    """An event set each time the store commits a change to the job (managers/jobs/watch.py);
    the writer is another thread, so the news crosses into this loop thread-safely."""
    loop, changed = asyncio.get_running_loop(), asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(changed.set)

    with jobs.store.watchers.watch(job_id, wake):
        yield changed


async def next_change(changed: asyncio.Event, timeout: float) -> None:
    """Until the job changes, or ``timeout`` at most (a change from another process is not
    told here); reading the job after this sees every change that woke it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), timeout)
    changed.clear()


async def uploads(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    """The files' names and bytes: all of them, as the gate (routes/gate.py) bounds the body
    they came in, so intake says how far past the limit they are. A name is the file's own,
    without the folders a client may send with it (either separator), as it names the
    document's files in a download's ZIP."""
    return [(PureWindowsPath(upload.filename or "").name or "document", await upload.read()) for upload in files]


Files = Annotated[list[UploadFile], File(description="The documents: images (PNG, JPEG, TIFF, …) or PDFs; "
                                                       "several files make one job.")]
Model = Annotated[str, Form(description="A model key, as GET /v1/models lists them (e.g. tesseract, dots_ocr).")]
Mode = Annotated[str | None, Form(description="vllm, local or cpu; default: the model's first mode.")]
TaskField = Annotated[str | None, Form(description="One of the model's tasks (GET /v1/models), or fields with a "
                                                   "template; default: the model's first task.")]
TemplateField = Annotated[str | None, Form(description="With task=fields: the kind of document whose fields are "
                                                       "read (GET /v1/models lists the templates).")]
PagesField = Annotated[str | None, Form(description="Pages to read, e.g. 1-3,5 (1-based); default: all.")]
HideHeaderFooter = Annotated[bool, Form(description="For layout tasks: leave out page headers and footers.")]
BoxField = Annotated[str | None, Form(description="For a task that reads the text inside a box (e.g. dots_ocr's "
                                                  "grounding_ocr): x1,y1,x2,y2 in the page's pixels. Required "
                                                  "for such a task, refused for any other.")]


@dataclass
class ReadForm:
    """What a request asks to read with (the form fields /v1/jobs and /v1/ocr share)."""

    model: Model
    mode: Mode = None
    task: TaskField = None
    template: TemplateField = None
    pages: PagesField = None
    hide_header_footer: HideHeaderFooter = False
    box: BoxField = None


async def accept(request: Request, who: str, files: list[UploadFile], form: ReadForm, max_pages: int) -> Job:
    config = request.app.state.config
    received = await uploads(files)
    spec = spec_for(config, form.model, form.mode or None, form.task or None, form.template or None,
                    form.hide_header_footer, form.box or None)
    check_runs_here(config, spec, await run_in_threadpool(facts, request))
    documents = await run_in_threadpool(documents_for, config, received, form.pages or None, max_pages)
    chats = request.app.state.chats

    def admit() -> Job:
        with chats.lock:  # the key's chats in flight and its jobs are counted together
            return request.app.state.jobs.submit(who, spec, documents, chats.count(who))

    return await run_in_threadpool(admit)


@router.post("", status_code=202, summary="Submit documents to read",
             responses={202: {"description": "The job, queued; poll it at Location."}})
async def submit(request: Request, files: Files, form: Annotated[ReadForm, Depends()],
                 who: str = Depends(owner)):
    """Queue documents to read with a model; answers 202 with the job at once. Follow it with
    GET /v1/jobs/{id} or its events, and download what was read with GET /v1/jobs/{id}/result.
    Refused in one sentence: a bad file (400), too many bytes or pages (413), an unknown
    model, task or template, or a box missing for a task that needs one (422), a full queue
    (429 with Retry-After), a mode this machine cannot run, as GET /v1/models says (503)."""
    job = await accept(request, who, files, form, request.app.state.config.api.max_pages)
    return JSONResponse(describe(job, language(request)), 202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/{job_id}", summary="A job's state and progress")
def status(request: Request, job_id: str, who: str = Depends(owner)):
    """The job's state (queued, running, done, failed, cancelled, interrupted), its pages done
    of total, each page that failed with its error, and the worker reading it (or that read
    it last)."""
    lang = language(request)
    return with_page_errors(request, request.app.state.jobs.get(who, job_id), lang)


@router.delete("/{job_id}", summary="Cancel a job")
def cancel(request: Request, job_id: str, who: str = Depends(owner)):
    """Cancel the job; the pages read stay, and its result gives them. A job that has ended is
    left as it is."""
    return describe(request.app.state.jobs.cancel(who, job_id), language(request))


@router.post("/{job_id}/resume", summary="Resume an interrupted job")
def resume(request: Request, job_id: str, who: str = Depends(owner)):
    """Queue an interrupted job again (one the server kept interrupted after a crash, with
    jobs.on_restart: keep); it goes on from its first unread page. 409 when the job is not
    interrupted."""
    return describe(request.app.state.jobs.resume(who, job_id), language(request))


@router.get("/{job_id}/result", summary="Download what a job read")
def result(request: Request, job_id: str,
           format: Annotated[str, Query(description="json, md, txt, xlsx, docx, csv or pdf.")] = "json",
           who: str = Depends(owner)):
    """The pages read so far, in any state (a cancelled or failed job gives the pages it read),
    as a file. Several documents give the text formats joined (JSON: a list) and the file
    formats as one ZIP. A fields job's xlsx and csv are one sheet of its documents' fields,
    a row per document; its txt and md list the fields before the text. 409 when there is
    nothing to export (no page read yet, or csv of a document without tables). The header
    X-Job-State says the job's state."""
    jobs = request.app.state.jobs
    job = jobs.get(who, job_id)
    made = result_file(request.app.state.config, jobs, job, jobs.results(who, job_id), format, language(request))
    return Response(made.data, media_type=made.mime,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{made.quoted_name}",
                             "X-Job-State": job.state})


def last_event_id(request: Request) -> int:
    """The id a reconnecting client saw last (0: none); refused unless it is one this API
    sends, a whole number SQLite can compare, rather than failing mid-stream."""
    last = request.headers.get("last-event-id", "").strip()
    if not last:
        return 0
    if not EVENT_ID.fullmatch(last):
        raise ConfigError(_("Last-Event-ID '{id}' is not the id of an event this API sent; reconnect without it "
                            "to get the job's events from the start.", id=last))
    return int(last)


@router.get("/{job_id}/events", summary="Follow a job as Server-Sent Events")
async def events(request: Request, job_id: str, who: str = Depends(owner)):
    """Progress as Server-Sent Events until the job ends (or is left interrupted, as
    jobs.on_restart: keep leaves it), then the stream closes: ``state``
    events (queued, running, then the final state), a ``page`` event for each page read,
    with pages_done and pages_total, and a ``note`` event when what the job waits for changes
    (no live worker can run it, with the Redis backend). Each event has an id: reconnect with Last-Event-ID to
    get only the events after it."""
    jobs, lang = request.app.state.jobs, language(request)
    await run_in_threadpool(jobs.get, who, job_id)  # an unknown job is a 404, not an empty stream
    after = last_event_id(request)

    async def stream():
        nonlocal after
        with changes(jobs, job_id) as changed:
            while True:
                for event in await run_in_threadpool(jobs.events, who, job_id, after):
                    after = event.seq
                    data = dict(event.data)
                    for said in ("error", "note"):
                        if data.get(said):
                            data[said] = Message.of(data[said]).render(lang)
                    if event.kind == "state":
                        data["state_text"] = STATE_WORDS[data["state"]].render(lang)
                    yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                job = await run_in_threadpool(jobs.get, who, job_id)
                # Interrupted lasts only while a job is kept so (jobs.on_restart: keep): nothing
                # comes after it until a client resumes or cancels the job, so the stream ends there too.
                ended = job.final or job.state == INTERRUPTED
                if ended and not await run_in_threadpool(jobs.events, who, job_id, after):
                    return
                if await request.is_disconnected():
                    return
                await next_change(changed, EVENT_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
