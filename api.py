"""The HTTP API: other programs send documents and get text, tables and fields back.

    .venv/bin/python api.py      (or: .venv/bin/uvicorn api:app --port 8000 --timeout-graceful-shutdown 5)

The same runner, arbiter and history as the app and the CLI, so one model holds the GPU
whoever asks. Routes live in routes/, jobs in managers/jobs/; this file only builds the app,
starts the job worker with it and stops it. Docs at /docs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from fastapi import FastAPI

from managers.api_keys import APIKeys
from managers.jobs.redis_queue import connect, dispatcher_id, refuse_other_dispatcher
from managers.jobs.service import Jobs, jobs_dir
from managers.jobs.store import JobStore
from managers.runtime import Runtime
from models.config import AppConfig, data_dir, load_config
from models.errors import ChatVLMError
from models.i18n import _, language_from_env
from routes import errors, jobs, models, reading
from routes.gate import Gate
from routes.auth import loopback

log = logging.getLogger("chatvlmllm.api")
# How long a stop waits for answers in progress. A job's events stream until the job ends
# (never, for one kept interrupted), so without a limit uvicorn would wait for them forever;
# a job cut by the stop is interrupted and resumed by the next start.
SHUTDOWN_S = 5


def create_app(config: AppConfig | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.config = config or load_config()
        state.runtime = Runtime(state.config)
        state.keys = APIKeys(data_dir())
        state.jobs = Jobs(state.runtime)
        state.chats = reading.Chats()
        interrupted = state.jobs.start()
        if interrupted:
            log.warning("%d job(s) were interrupted by the last stop; jobs.on_restart is %s",
                        len(interrupted), state.config.jobs.on_restart)
        try:
            yield
        finally:
            state.jobs.stop()
            state.runtime.close()

    app = FastAPI(title="ChatVLMLLM", summary="Read documents into text, tables and fields.", lifespan=lifespan)
    errors.install(app)
    app.add_middleware(Gate)
    for part in (models, jobs, reading):
        app.include_router(part.router)
    return app


app = create_app()


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    lang = language_from_env()
    parser = argparse.ArgumentParser(description=_("The ChatVLMLLM HTTP API.").render(lang))
    parser.add_argument("--config", help=_("config file (default: $CHATVLMLLM_CONFIG or config.yaml)").render(lang))
    parser.add_argument("--host", help=_("address to listen on (default: api.host, 127.0.0.1)").render(lang))
    parser.add_argument("--port", type=int, help=_("port (default: api.port, 8000)").render(lang))
    args = parser.parse_args(argv)
    try:  # each said in one sentence here, not as uvicorn's trace of a failed startup
        config = load_config(args.config)
        store = JobStore(jobs_dir())
        try:
            store.refuse_if_taken()
            if config.jobs.backend == "redis":
                client = connect(config.jobs.redis_url)
                refuse_other_dispatcher(client, config.jobs.redis_url, dispatcher_id(store.path))
                client.close()
        finally:
            store.close()
    except ChatVLMError as exc:
        print(_("error: {error}", error=exc.message).render(lang), file=sys.stderr)
        return 1
    host, port = args.host or config.api.host, args.port or config.api.port
    if not loopback(host):
        print(_("warning: the API listens on {host}, reachable from the network; every request needs an API key "
                "(cli.py api-key create NAME).", host=host).render(lang), file=sys.stderr)
    uvicorn.run(create_app(config), host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
