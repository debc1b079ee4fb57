"""What a request to /v1/ is refused for before its body is read: no valid API key (401),
or a body past ``api.max_upload_mb`` (413).

FastAPI reads a route's form — spooling its files to disk — before any dependency runs, so a
check made in a dependency comes after the upload is taken in. Here the key is checked on
the headers alone, a declared Content-Length past the limit is refused before a byte of the
body is read, and Starlette's body limit stops a chunked body as soon as it passes the limit.
"""

from __future__ import annotations

from fastapi import Request
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from managers.jobs.intake import MB, too_large
from models.config import AppConfig
from models.errors import ChatVLMError
from routes import errors
from routes.auth import authenticate

# Room for the form's other fields and the multipart framing around the files; the files
# themselves are held to api.max_upload_mb by intake (managers/jobs/intake.py).
FORM_SLACK = MB


def body_limit(config: AppConfig) -> int:
    return int(config.api.max_upload_mb * MB) + FORM_SLACK


class Gate:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            request.state.owner = authenticate(request)
        except ChatVLMError as exc:
            await errors.of(exc, errors.language(request))(scope, receive, send)
            return
        config = request.app.state.config
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_limit(config):
            # Answered here, in one sentence: Starlette's limit would answer it in plain text.
            await errors.of(too_large(config, int(declared)), errors.language(request))(scope, receive, send)
            return
        await RequestBodyLimitMiddleware(self.app, body_limit(config))(scope, receive, send)
