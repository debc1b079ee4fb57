"""Jobs: submit documents, follow them, cancel them, download what was read.

    POST   /v1/jobs                 multipart files + model, mode, task, template, pages → 202
    GET    /v1/jobs/{id}            state, pages done of total, per-page errors
    GET    /v1/jobs/{id}/result     ?format=json|md|txt|… (the pages read so far, any state)
    GET    /v1/jobs/{id}/events     Server-Sent Events until the job ends
    DELETE /v1/jobs/{id}            cancel; pages read are kept
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from managers.jobs.intake import documents_for, spec_for
from managers.jobs.store import Job
from models.i18n import Message
from models.jobs import STATE_WORDS
from routes.auth import owner
from routes.errors import language
from routes.results import ALL_FORMATS, result_file

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
EVENT_POLL_S = 0.25


def describe(job: Job, lang: str) -> dict:
    """A job as the API shows it."""
    page_errors = []
    return {
        "id": job.id,
        "state": job.state,
        "state_text": STATE_WORDS[job.state].render(lang),
        "model": job.spec.model, "mode": job.spec.mode, "task": job.spec.task, "template": job.spec.template,
        "pages_done": job.pages_done, "pages_total": job.pages_total,
        "documents": [{"name": d.name, "pages": [i + 1 for i in d.pages], "pages_done": d.done} for d in job.documents],
        "page_errors": page_errors,
        "error": job.error.render(lang) if job.error else None,
        "interruptions": job.interruptions,
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


async def uploads(files: list[UploadFile], limit_mb: float) -> list[tuple[str, bytes]]:
    """The files' names and bytes; reading stops past the limit, which intake then refuses."""
    read, budget = [], int(limit_mb * 2**20) + 1
    for upload in files:
        data = await upload.read(budget)
        budget = max(0, budget - len(data))
        read.append((upload.filename or "document", data))
    return read


async def accept(request: Request, who: str, files: list[UploadFile], model: str, mode: str | None,
                 task: str | None, template: str | None, pages: str | None, hide_header_footer: bool,
                 max_pages: int) -> Job:
    config = request.app.state.config
    received = await uploads(files, config.api.max_upload_mb)
    spec = spec_for(config, model, mode or None, task or None, template or None, hide_header_footer)
    documents = await run_in_threadpool(documents_for, config, received, pages or None, max_pages)
    return await run_in_threadpool(request.app.state.jobs.submit, who, spec, documents)


@router.post("", status_code=202)
async def submit(request: Request, files: list[UploadFile] = File(...), model: str = Form(...),
                 mode: str | None = Form(None), task: str | None = Form(None), template: str | None = Form(None),
                 pages: str | None = Form(None), hide_header_footer: bool = Form(False),
                 who: str = Depends(owner)):
    """Queue documents to read; answers 202 with the job at once."""
    job = await accept(request, who, files, model, mode, task, template, pages, hide_header_footer,
                       request.app.state.config.api.max_pages)
    return JSONResponse(describe(job, language(request)), 202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/{job_id}")
def status(request: Request, job_id: str, who: str = Depends(owner)):
    """The job's state and progress."""
    lang = language(request)
    return with_page_errors(request, request.app.state.jobs.get(who, job_id), lang)


@router.delete("/{job_id}")
def cancel(request: Request, job_id: str, who: str = Depends(owner)):
    """Cancel the job; the pages read stay, and its result gives them."""
    return describe(request.app.state.jobs.cancel(who, job_id), language(request))


@router.get("/{job_id}/result")
def result(request: Request, job_id: str, format: str = "json", who: str = Depends(owner)):
    """What was read so far, in one of the export formats."""
    jobs = request.app.state.jobs
    job = jobs.get(who, job_id)
    made = result_file(request.app.state.config, jobs, job, jobs.results(who, job_id), format, language(request))
    return Response(made.data, media_type=made.mime,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{made.quoted_name}",
                             "X-Job-State": job.state})


@router.get("/{job_id}/events")
async def events(request: Request, job_id: str, who: str = Depends(owner)):
    """Progress as Server-Sent Events: ``state`` and ``page`` events, until the job ends."""
    jobs, lang = request.app.state.jobs, language(request)
    await run_in_threadpool(jobs.get, who, job_id)  # an unknown job is a 404, not an empty stream
    after = int(request.headers.get("last-event-id") or 0)

    async def stream():
        nonlocal after
        while True:
            for event in await run_in_threadpool(jobs.events, who, job_id, after):
                after = event.seq
                data = dict(event.data)
                if "error" in data:
                    data["error"] = Message.of(data["error"]).render(lang)
                if event.kind == "state":
                    data["state_text"] = STATE_WORDS[data["state"]].render(lang)
                yield f"id: {event.seq}\nevent: {event.kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
            job = await run_in_threadpool(jobs.get, who, job_id)
            if job.final and not await run_in_threadpool(jobs.events, who, job_id, after):
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
