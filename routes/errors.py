"""Errors as the API answers them: one sentence in the reader's language and a code that
stays the same in every language, so a program can branch on it.

    {"error": {"code": "too_large", "message": "The upload is 60.2 MB, over …"}}
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from models.errors import (Busy, Cancelled, ChatVLMError, ConfigError, EngineError, InputError, JobError,
                           NothingToExport, NotAvailable, Superseded, SwitchError, TooLarge, Unauthorized)
from models.i18n import Message, _, plain_language

log = logging.getLogger(__name__)
VALUE_SHOWN = 40  # of a refused field's value, quoted back

# The first class an error is an instance of decides; subclasses come before their bases.
CODES: list[tuple[type[ChatVLMError], int, str]] = [
    (TooLarge, 413, "too_large"),
    (InputError, 400, "bad_document"),
    (Busy, 429, "busy"),
    (Unauthorized, 401, "unauthorized"),
    (JobError, 404, "no_such_job"),
    (ConfigError, 422, "invalid_request"),
    (NothingToExport, 409, "nothing_to_export"),
    (Superseded, 409, "superseded"),
    (Cancelled, 409, "cancelled"),
    (SwitchError, 503, "switch_failed"),
    (NotAvailable, 503, "not_available"),
    (EngineError, 502, "engine_failed"),
    (ChatVLMError, 500, "failed"),
]


def language(request: Request) -> str:
    """The first language of Accept-Language (by its q weights) that the API speaks; English
    where none is."""
    ranked = []
    for n, part in enumerate(request.headers.get("accept-language", "").split(",")):
        tag, _sep, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and weight > 0:
            ranked.append((-weight, n, tag))
    for _weight, _n, tag in sorted(ranked):
        lang = plain_language(tag)
        if lang != "en" or tag.lower().startswith("en"):
            return lang
    return "en"


def answer(status: int, code: str, message: Message, lang: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message.render(lang)}}, status, headers=headers)


def of(exc: ChatVLMError, lang: str) -> JSONResponse:
    status, code = next((status, code) for kind, status, code in CODES if isinstance(exc, kind))
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return answer(status, code, exc.message, lang, headers)


def install(app) -> None:
    @app.exception_handler(ChatVLMError)
    async def domain(request: Request, exc: ChatVLMError):
        return of(exc, language(request))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):  # a fault still answers in one sentence, and is logged
        log.exception("%s %s failed", request.method, request.url.path)
        return answer(500, "failed", _("The request failed unexpectedly ({reason}); the server log has the "
                                       "details.", reason=type(exc).__name__), language(request))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        kind, value = first.get("type", ""), str(first.get("input", ""))[:VALUE_SHOWN]
        # Pydantic's reasons are English only: the kinds a form field can be wrong in are said here.
        if kind == "missing":
            message = _("The request has no {field}; send it as a form field.", field=where)
        elif kind.startswith("int_"):
            message = _("The request's {field} must be a whole number, such as 1; it is '{value}'.", field=where,
                        value=value)
        elif kind.startswith("bool_"):
            message = _("The request's {field} must be true or false; it is '{value}'.", field=where, value=value)
        else:
            message = _("The request's {field} is not what it takes; /docs says what it does take.", field=where)
        return answer(422, "invalid_request", message, language(request))

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            message, code = _("There is no {path} here; the API's routes are listed at /docs.",
                              path=request.url.path), "not_found"
        elif exc.status_code == 413:  # the body limit (routes/gate.py), before the files were read
            message, code = _("The upload is over the API's {limit:g} MB limit (api.max_upload_mb); send fewer or "
                              "smaller files.", limit=request.app.state.config.api.max_upload_mb), "too_large"
        elif exc.status_code == 405:
            message, code = _("{path} does not take {method}; see /docs.", path=request.url.path,
                              method=request.method), "method_not_allowed"
        else:
            message, code = Message(str(exc.detail)), "http_error"
        return answer(exc.status_code, code, message, language(request), getattr(exc, "headers", None))
