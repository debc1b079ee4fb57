"""A request's files and form, checked before a job is kept: one sentence for what is wrong.

Every document is opened here, in the request, so a damaged or mistyped file is refused at
once (400) and never becomes a job that fails later; the pages are chosen and counted
against ``api.max_pages`` (413). The model, mode, task and template are checked as the
runner checks them, and the mode against what this machine runs, so a job that is accepted
can be read.
"""

from __future__ import annotations

from models.answers import GROUNDING_MARK
from models.config import FIELDS, MODE_LABELS, AppConfig, Task, fields_task
from models.document import open_document, parse_page_range
from models.errors import ConfigError, NotAvailable, TooLarge
from models.i18n import _, n_
from managers.availability import HostFacts, why_not
from managers.jobs.store import Spec
from managers.runs import check_mode, managed

MB = 2**20


def spec_for(config: AppConfig, model: str, mode: str | None = None, task: str | None = None,
             template: str | None = None, hide_header_footer: bool = False, box: str | None = None) -> Spec:
    """The job's choice, resolved (the model's first mode and task where none is given)."""
    chosen = check_mode(config, model, mode)
    if task == FIELDS:
        reads = fields_task(template, config.template(template))
    else:
        if template:
            raise ConfigError(_("A template is for the fields task only; send task=fields with it."))
        task, reads = config.model(model).task(task)
    return Spec(model, chosen, task, template if task == FIELDS else None, hide_header_footer,
                managed(config, model, chosen), box_for(task, reads, box))


def check_runs_here(config: AppConfig, spec: Spec, host: HostFacts) -> None:
    """Refuse a choice this machine cannot run (503), for the reason GET /v1/models gives,
    rather than keep a job that can only fail."""
    model = config.model(spec.model)
    reason = why_not(model, spec.mode, host, config)
    if reason is not None:
        raise NotAvailable(_("{model} cannot run in {mode} on this machine: {reason}.", model=model.name,
                             mode=MODE_LABELS[spec.mode], reason=reason))


def box_for(name: str, task: Task, box: str | None) -> tuple[int, int, int, int] | None:
    """The box a grounding task reads (x1,y1,x2,y2 in page pixels): required for it, refused
    for any other task, so that no job is accepted whose every page would fail."""
    grounding = task.prompt.endswith(GROUNDING_MARK)
    if not box:
        if grounding:
            raise ConfigError(_("The task {task} reads the text inside a box; send box=x1,y1,x2,y2 in the page's "
                                "pixels.", task=name))
        return None
    if not grounding:
        raise ConfigError(_("The task {task} reads the whole page; send box only with a task that reads a box, "
                            "such as grounding_ocr.", task=name))
    try:
        x1, y1, x2, y2 = (int(part) for part in box.split(","))
    except ValueError:
        x1 = y1 = x2 = y2 = -1
    if min(x1, y1) < 0 or x2 <= x1 or y2 <= y1:
        raise ConfigError(_("box must be x1,y1,x2,y2 in the page's pixels, with x2 right of x1 and y2 below y1; "
                            "it is '{box}'.", box=box))
    return x1, y1, x2, y2


def too_large(config: AppConfig, size: int) -> TooLarge:
    return TooLarge(_("The upload is {size:.1f} MB, over the API's {limit} MB limit (api.max_upload_mb); send "
                      "fewer or smaller files.", size=size / MB, limit=config.api.max_upload_mb))


def check_size(config: AppConfig, files: list[tuple[str, bytes]]) -> None:
    """Refuse files past ``api.max_upload_mb`` together (413)."""
    size = sum(len(data) for _name, data in files)
    if size > config.api.max_upload_mb * MB:
        raise too_large(config, size)


def documents_for(config: AppConfig, files: list[tuple[str, bytes]], pages: str | None,
                  max_pages: int) -> list[tuple[str, bytes, list[int]]]:
    """(name, bytes, page indexes) for each file, refused past the upload or page limits."""
    check_size(config, files)
    documents = []
    for name, data in files:
        document = open_document(data, name, config.limits)
        indexes = parse_page_range(pages, document.page_count) if pages else list(range(document.page_count))
        documents.append((name, data, indexes))
    total = sum(len(indexes) for _name, _data, indexes in documents)
    if total > max_pages:
        raise TooLarge(n_("The request has {count} pages, over the limit of {n} page; send a page range "
                          "(pages=1-{n}) or fewer files.",
                          "The request has {count} pages, over the limit of {n} pages; send a page range "
                          "(pages=1-{n}) or fewer files.", max_pages, count=total))
    return documents
