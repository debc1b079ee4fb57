"""A model's answer for one page → the page's result, the same for every VLM engine.

dots.ocr layouts become boxes in original-page pixels; any other answer becomes one Text box
over the whole page, so every view works for every model. The answer is parsed once into typed
blocks (models/structure.py), and the page's text and Markdown are rendered from them. The
fields task's answer gives the page's values (models/fields/answer.py) and is shown as its JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from models import layout, render, structure
from models.config import FieldsTask, ModelConfig, Task
from models.document import Page
from models.elements import Code, Element
from models.errors import EngineError
from models.fields import answer as fields_answer
from models.i18n import Message, _
from models.result import Block, PageResult


GROUNDING_MARK = "Bounding Box:\n"


def fit_to_model(image: Image.Image, model: ModelConfig) -> Image.Image:
    """The image as the model will see it: resized into its pixel range, sides multiples of
    its resize factor, so its processor leaves it as it is and boxes map back exactly."""
    if model.max_pixels is None:
        return image
    h, w = layout.smart_resize(image.height, image.width, factor=model.resize_factor,
                               min_pixels=model.min_pixels or 3136, max_pixels=model.max_pixels)
    return image if (w, h) == image.size else image.resize((w, h), Image.Resampling.BICUBIC)


def prompt_for(task: Task, box: tuple[int, int, int, int] | None, page_size: tuple[int, int],
               seen_size: tuple[int, int]) -> str:
    """The task's prompt; a grounding prompt gets the box, moved into the seen image's pixels."""
    if not task.prompt.endswith(GROUNDING_MARK):
        return task.prompt
    if box is None:
        raise EngineError(_("This task reads the text inside a box: enter the box first."))
    sx, sy = seen_size[0] / page_size[0], seen_size[1] / page_size[1]
    x1, y1, x2, y2 = box
    return task.prompt + str([round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)])


@dataclass
class Prepared:
    """A page turned into its request: what the model is sent, and the sizes to map back."""

    index: int
    size: tuple[int, int]  # the page in result pixels
    seen_size: tuple[int, int]  # the image the model sees
    messages: list[dict]
    warnings: list[Message] = field(default_factory=list)


class Reloadable(Protocol):
    def load(self, max_pixels: int | None = None) -> Page: ...


def full_page(page: Page) -> Image.Image:
    """The page at its result size, for crops whose boxes are in those pixels."""
    return page.image if page.full_size is None else page.image.resize(page.full_size)


def page_from_answer(answer: str, cut: bool, request: Prepared, task: Task, max_tokens: int,
                     hide_header_footer: bool = False, source: Reloadable | None = None) -> PageResult:
    """``cut``: generation stopped at max_tokens. ``source`` gives the page again for
    picture crops (only layouts with pictures need it)."""
    width, height = request.size
    warnings = list(request.warnings)
    # A server may send a lone surrogate ("\\ud800" in its JSON): no file or history row can hold it.
    answer = answer.encode("utf-8", errors="replace").decode("utf-8")
    if isinstance(task, FieldsTask):
        return _fields_page(answer, cut, request, task, max_tokens, warnings)
    if cut:
        # The count as config.yaml writes it, not grouped: the reader looks it up there.
        warnings.append(_("The answer was cut at {tokens} tokens (requests.max_tokens).", tokens=str(max_tokens)))
    if task.output == "layout":
        cells, repaired = layout.parse_layout(answer)
        warnings += repaired
        if cells or not answer.strip():
            blocks, dropped = layout.to_blocks(cells, request.seen_size, request.size)
            elements, cut_tables = structure.from_layout(blocks, hide_header_footer)
            warnings += dropped + cut_tables
            pictures = source is not None and any(e.type == "picture" for e in elements)
            crop = layout.Crops(full_page(source.load())).data_url if pictures else None
            return PageResult(index=request.index, width=width, height=height, warnings=warnings,
                              blocks=blocks, elements=elements, text=render.elements_text(elements),
                              markdown=render.elements_markdown(elements, crop))
        warnings.append(_("The answer held no layout JSON; it is shown as plain text."))
    if task.output == "markdown":
        elements, cut_tables = structure.from_markdown(answer)
        warnings += cut_tables
    else:
        elements = structure.from_text(answer)
    return _whole_page(request, elements, warnings)


def _whole_page(request: Prepared, elements: list[Element], warnings: list[Message], **fields) -> PageResult:
    """A page whose answer has no boxes of its own: one block over the whole page."""
    width, height = request.size
    text = render.elements_text(elements)
    return PageResult(index=request.index, width=width, height=height, warnings=warnings, text=text,
                      markdown=render.elements_markdown(elements), elements=elements,
                      blocks=[Block(bbox=(0, 0, width, height), text=text)], **fields)


def _fields_page(answer: str, cut: bool, request: Prepared, task: FieldsTask, max_tokens: int,
                 warnings: list[Message]) -> PageResult:
    """The fields the answer gives, and the answer shown as its JSON, pretty-printed; an answer
    without JSON gives no fields and one warning, and is shown as the text it is."""
    read = fields_answer.read(answer, task.template, request.index, request.seen_size, request.size)
    if read.data is None:
        warnings.append(_("The answer was cut at {tokens} tokens (requests.max_tokens) before its JSON ended; "
                          "no fields were read from this page.", tokens=str(max_tokens)) if cut
                        else _("The answer is not a JSON object of fields; no fields were read from this page."))
        return _whole_page(request, structure.from_text(answer), warnings)
    if cut:
        warnings.append(_("The answer was cut at {tokens} tokens (requests.max_tokens).", tokens=str(max_tokens)))
    pretty = json.dumps(read.data, ensure_ascii=False, indent=2)
    return _whole_page(request, [Code(text=pretty)], warnings + read.warnings, fields=read.values)
