"""What runs here: ``GET /health`` and ``GET /v1/models`` (each model's modes, whether each
can run on this machine and why not, as the sidebar says, and what holds the GPU)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from managers.availability import probe_host, why_not
from managers.jobs.dispatch import Dispatcher
from models.errors import NotAvailable
from models.config import FIELDS, MODE_LABELS
from models.i18n import translate
from routes.auth import owner
from routes.errors import language

router = APIRouter(tags=["models"])
FACTS_TTL_S = 10.0  # probing Docker and NVML on every request would be slow; facts change rarely


def facts(request: Request):
    state = request.app.state
    cached = getattr(state, "facts", None)
    if cached is None or time.monotonic() - cached[0] > FACTS_TTL_S:
        state.facts = cached = (time.monotonic(), probe_host(state.config))
    return cached[1]


@router.get("/health", summary="Is the API up")
def health(request: Request):
    """Liveness: 200 while the API answers, with its jobs backend and how many jobs are
    unfinished of the queue's size. With the redis backend, also the live workers (what each
    holds) — or, while Redis does not answer, status "degraded" and the sentence why. Needs
    no API key."""
    jobs, config = request.app.state.jobs, request.app.state.config
    shown = {"status": "ok", "backend": config.jobs.backend, "jobs_unfinished": jobs.store.unfinished(),
             "queue_size": config.jobs.queue_size}
    if isinstance(jobs.worker, Dispatcher):
        try:
            jobs.worker.check()
            shown["workers"] = [{"name": name, "holding": list(beat.holding) if beat.holding else None}
                                for name, beat in jobs.worker.workers().items()]
        except NotAvailable as exc:
            shown.update(status="degraded", error=exc.message.render(language(request)))
    return shown


@router.get("/v1/models", summary="What can read documents here")
def models(request: Request, who: str = Depends(owner)):
    """Every model with its modes — whether each can run on this machine and, where not, why,
    in the words of the app's sidebar — its tasks (``fields`` reads a template's fields), the
    templates, and which model holds the GPU now."""
    config, lang = request.app.state.config, language(request)
    host = facts(request)
    holder = request.app.state.runtime.arbiter.holder()
    listed = []
    for key, model in config.models.items():
        modes = []
        for mode in model.modes:
            reason = why_not(model, mode, host, config)
            modes.append({"mode": mode, "label": translate(MODE_LABELS[mode], lang), "available": reason is None,
                          "why_not": reason.render(lang) if reason else None})
        listed.append({"key": key, "name": str(model.name), "modes": modes,
                       "tasks": [*model.tasks, FIELDS], "default": key == config.default_model,
                       "active": holder is not None and holder.model == key,
                       "active_mode": holder.mode if holder is not None and holder.model == key else None})
    return {"models": listed, "templates": list(config.templates),
            "holder": {"mode": holder.mode, "model": holder.model} if holder else None}
