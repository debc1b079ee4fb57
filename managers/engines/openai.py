"""Reading pages through an OpenAI-compatible server: a vLLM container this app manages,
or a remote endpoint named in config.yaml.

Each page goes as a base64 data URL, resized into the model's pixel range the way its
processor would (so layout boxes come back in pixels we know), with the task's prompt
verbatim. Pages are prepared (decoded, shrunk, encoded) before the first is sent, then sent
``requests.concurrency`` at a time through the shared page loop (models/engine.py), which
vLLM batches. A managed server is guarded by the project's API key, a remote one by the key
in ``api_key_env``.
"""

from __future__ import annotations

import base64
import io
import os
import re

from PIL import Image

from models.answers import Prepared, fit_to_model, page_from_answer, prompt_for
from models.config import AppConfig, Task
from models.document import Page
from models.engine import Engine, PageSource
from models.errors import EngineError
from models.result import PageResult

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

    # --- one request ------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> Image.Image:
        """The image as the model will see it: resized into its pixel range, sides multiples
        of 28, so the processor leaves it as it is and boxes map back exactly."""
        if self.model.max_pixels is None:
            return image
        return fit_to_model(image, self.model)

    def ask(self, messages: list[dict], page_number: int | None = None) -> tuple[str, str]:
        """The answer's text and its finish reason; EngineError with one sentence on failure."""
        import openai

        where = f"page {page_number}" if page_number else "the question"
        try:
            response = self.client.chat.completions.create(
                model=self.vllm.served_model_name, messages=messages,
                max_tokens=self.requests.max_tokens, temperature=self.requests.temperature)
        except openai.APITimeoutError:
            raise EngineError(f"The model server did not answer {where} within "
                              f"{self.requests.timeout_s:g} s (requests.timeout_s).") from None
        except openai.APIConnectionError:
            raise EngineError(f"Cannot reach the model server at {self.vllm.base_url} for {where}; "
                              "is it running?") from None
        except openai.APIStatusError as exc:
            detail = re.sub(r"^Error code: \d+ - ", "", (exc.message or "").splitlines()[0] if exc.message else "")[:200]
            raise EngineError(f"The model server refused {where} ({exc.status_code}): {detail}") from None
        choice = response.choices[0]
        return choice.message.content or "", choice.finish_reason or ""

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
        answer, finish = self.ask(request.messages, request.index + 1)
        return page_from_answer(answer, finish == "length", request, task, self.requests.max_tokens,
                                self.hide_header_footer, source)

    def read_page(self, page: Page, task: Task) -> PageResult:
        return self.answer(self.prepare_page(page, task), task, page)

    def chat(self, image: Image.Image, history: list[tuple[str, str]], question: str) -> str:
        """Answer a question about a page, given the conversation so far (role, text)."""
        messages: list[dict] = []
        turns = [*history, ("user", question)]
        for n, (role, text) in enumerate(turns):
            if n == 0:
                content = [self.image_part(self.prepare(image)), {"type": "text", "text": text}]
                messages.append({"role": "user", "content": content})
            else:
                messages.append({"role": role, "content": text})
        return self.ask(messages)[0]

    # --- the page loop's steps ---------------------------------------------------------------

    def encode(self, page: Page, task: Task) -> Prepared:
        prepared = self.prepare_page(page, task)
        prepared.warnings = list(page.warnings)
        return prepared

    def read_encoded(self, item: Prepared, task: Task, source: PageSource) -> PageResult:
        return self.answer(item, task, source)

    def abort(self) -> None:
        self.client.close()  # requests in flight fail at once; their pages are abandoned
