"""Reading pages through an OpenAI-compatible server: a vLLM container this app manages,
or a remote endpoint named in config.yaml.

Each page goes as a base64 data URL, resized into the model's pixel range the way its
processor would (so layout boxes come back in pixels we know), with the task's prompt
verbatim. Pages are prepared (decoded, shrunk, encoded) before the first is sent, then sent
``requests.concurrency`` at a time through the shared page loop (models/engine.py), which
vLLM batches. A managed server is guarded by the project's API key, a remote one by the key
in ``api_key_env``. Where someone watches the answer grow (``on_text``), it is streamed and
then parsed exactly as a whole answer is.

The fields task asks for structured outputs (``response_format`` with the template's JSON
Schema; vLLM dropped ``guided_json``), so a vLLM server's answer is valid JSON by construction.
A remote server that refuses ``response_format`` is asked again without it, and from then on
for this engine's pages, each page saying that its answer was not held to the schema.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from functools import partial

from PIL import Image

from models.answers import Prepared, fit_to_model, page_from_answer, prompt_for
from models.config import AppConfig, FieldsTask, Task
from models.document import Page
from models.engine import Engine, PageSource
from models.errors import Cancelled, EngineError
from models.i18n import _
from models.result import PageResult

log = logging.getLogger(__name__)


class OpenAIEngine(Engine):
    engine_name = "vllm"
    shrinks_pages = True
    encode_ahead = True

    def __init__(self, config: AppConfig, key: str, api_key: str | None = None):
        """``api_key``: the managed server's key; a remote endpoint's comes from api_key_env."""
        import openai

        model = config.model(key)
        super().__init__(key, model)
        assert model.vllm is not None
        self.vllm = model.vllm
        self.requests = config.requests_for(key)
        self.concurrency = self.requests.concurrency
        if model.vllm.remote:
            self.engine_name = "remote"
            api_key = os.environ.get(model.vllm.api_key_env or "", "")
        api_key = api_key or "EMPTY"
        self.client = openai.OpenAI(base_url=model.vllm.base_url + "/v1", api_key=api_key,
                                    timeout=self.requests.timeout_s, max_retries=0)
        self.hide_header_footer = False
        self.box: tuple[int, int, int, int] | None = None  # for the grounding task, page pixels
        self.aborted = threading.Event()
        self._streams: set = set()  # answers being streamed, hung up on by ``abort``
        self.refuses_schema = False  # the server refused response_format once: not asked again

    # --- one request ------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> Image.Image:
        """The image as the model will see it: resized into its pixel range, sides multiples
        of 28, so the processor leaves it as it is and boxes map back exactly."""
        if self.model.max_pixels is None:
            return image
        return fit_to_model(image, self.model)

    def ask(self, messages: list[dict], page_number: int | None = None,
            on_text: Callable[[str], None] | None = None, schema: dict | None = None) -> tuple[str, str]:
        """The answer's text and its finish reason; EngineError with one sentence on failure.
        With ``on_text`` the answer is streamed, and on_text receives it so far as it grows.
        ``schema``: the JSON Schema the answer is held to, where the server accepts one."""
        import openai

        where = _("page {page}", page=page_number) if page_number else _("the question")
        try:
            if schema is not None and not self.refuses_schema:
                try:
                    return self._ask(messages, on_text, schema)
                except openai.BadRequestError as exc:
                    if "response_format" not in str(exc.message):
                        raise
                    log.warning("%s refused response_format (%s); asking without it", self.vllm.base_url,
                                _detail(exc))
                    self.refuses_schema = True
            return self._ask(messages, on_text, None)
        except openai.APITimeoutError:
            raise EngineError(_("The model server did not answer {what} within {seconds:g} s (requests.timeout_s).",
                                what=where, seconds=self.requests.timeout_s)) from None
        except openai.APIConnectionError:
            raise EngineError(_("Cannot reach the model server at {url} for {what}; is it running?",
                                url=self.vllm.base_url, what=where)) from None
        except openai.APIStatusError as exc:
            raise EngineError(_("The model server refused {what} ({status}): {reason}",
                                what=where, status=str(exc.status_code), reason=_detail(exc))) from None
        except openai.APIError as exc:  # an error event in the middle of a stream
            raise EngineError(_("The model server failed while answering {what}: {reason}",
                                what=where, reason=_detail(exc))) from None

    def _ask(self, messages: list[dict], on_text: Callable[[str], None] | None,
             schema: dict | None) -> tuple[str, str]:
        return self._stream(messages, on_text, schema) if on_text else self._complete(messages, schema)

    def _request(self, messages: list[dict], stream: bool, schema: dict | None):
        # strict: OpenAI's own servers hold the answer to the schema only when asked to.
        constrained = ({"response_format": {"type": "json_schema", "json_schema": {
            "name": "fields", "schema": schema, "strict": True}}} if schema is not None else {})
        return self.client.chat.completions.create(
            model=self.vllm.served_model_name, messages=messages, stream=stream,
            max_tokens=self.requests.max_tokens, temperature=self.requests.temperature, **constrained)

    def _complete(self, messages: list[dict], schema: dict | None) -> tuple[str, str]:
        choice = self._request(messages, False, schema).choices[0]
        return choice.message.content or "", choice.finish_reason or ""

    def _stream(self, messages: list[dict], on_text: Callable[[str], None], schema: dict | None) -> tuple[str, str]:
        text, finish = "", ""
        # Leaving the block closes the response, so the server stops generating an answer
        # nobody reads: after a cancel, or when on_text raises (a Streamlit rerun).
        with self._request(messages, True, schema) as stream:
            self._streams.add(stream)
            try:
                for chunk in stream:
                    if self.aborted.is_set():
                        raise Cancelled(_("The answer was abandoned: cancelled."))
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    finish = choice.finish_reason or finish
                    if choice.delta.content:
                        text += choice.delta.content
                        on_text(text)
            finally:
                self._streams.discard(stream)
        return text, finish

    @staticmethod
    def image_part(image: Image.Image) -> dict:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        return {"type": "image_url", "image_url": {"url": url}}

    def prepare_page(self, page: Page, task: Task) -> Prepared:
        seen = self.prepare(page.image)
        prompt = prompt_for(task, self.box, page.size, seen.size)
        messages = [{"role": "user", "content": [self.image_part(seen), {"type": "text", "text": prompt}]}]
        return Prepared(page.index, page.size, seen.size, messages)

    def answer(self, request: Prepared, task: Task, source: PageSource | None = None) -> PageResult:
        """Send a prepared page and read the answer as the task says. ``source`` gives the
        page again for picture crops (only layouts with pictures need it)."""
        on_text = partial(self.on_text, request.index) if self.on_text else None
        schema = task.json_schema if isinstance(task, FieldsTask) else None
        answer, finish = self.ask(request.messages, request.index + 1, on_text, schema)
        page = page_from_answer(answer, finish == "length", request, task, self.requests.max_tokens,
                                self.hide_header_footer, source)
        if schema is not None and self.refuses_schema:
            page.warnings.append(_("The server refused structured outputs (response_format): this answer was "
                                   "not held to the template's JSON Schema."))
        return page

    def read_page(self, page: Page, task: Task) -> PageResult:
        return self.answer(self.prepare_page(page, task), task, page)

    def chat(self, image: Image.Image, history: list[tuple[str, str]], question: str,
             on_text: Callable[[str], None] | None = None) -> str:
        """Answer a question about a page, given the conversation so far (role, text);
        ``on_text`` receives the answer so far while it is generated."""
        messages: list[dict] = []
        turns = [*history, ("user", question)]
        for n, (role, text) in enumerate(turns):
            if n == 0:
                content = [self.image_part(self.prepare(image)), {"type": "text", "text": text}]
                messages.append({"role": "user", "content": content})
            else:
                messages.append({"role": role, "content": text})
        return self.ask(messages, on_text=on_text)[0]

    # --- the page loop's steps ---------------------------------------------------------------

    def encode(self, page: Page, task: Task) -> Prepared:
        prepared = self.prepare_page(page, task)
        prepared.warnings = list(page.warnings)
        return prepared

    def read_encoded(self, item: Prepared, task: Task, source: PageSource) -> PageResult:
        return self.answer(item, task, source)

    def abort(self) -> None:
        self.aborted.set()  # a stream reads no further chunk: nothing is shown after a cancel
        for stream in list(self._streams):
            _hang_up(stream)
        self.client.close()  # requests in flight fail at once; their pages are abandoned


def _hang_up(stream) -> None:
    """Shut a streamed answer's socket. Closing the client does not wake a thread blocked
    reading it, so a server still thinking (before its next token) would not see the client
    go and would go on generating for nobody."""
    network = stream.response.extensions.get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)


def _detail(exc) -> str:
    """The server's own words, without the client's "Error code: 500 - " prefix."""
    first = exc.message.splitlines()[0] if exc.message else ""
    return re.sub(r"^Error code: \d+ - ", "", first)[:200]
