#!/usr/bin/env python3
"""ChatVLMLLM without a browser: list models, read documents to txt, md or json (and the
formats of models/exports), read the fields of many documents into one sheet, list or export
again the runs the history keeps, score models against documents whose true text or
fields are known, and make the HTTP API's keys.

Results go to standard output (or files under --out); progress and messages go to
standard error, in the language of --lang (default: from LANGUAGE, LC_ALL, LC_MESSAGES or
LANG, as gettext chooses; English or Russian). Exit codes: 0 all pages read, 1 some pages or
files failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from managers import eval_report, evaluation, runs
from managers.api_keys import APIKeys
from managers.availability import probe_host, why_not
from managers.history import Entry, History
from managers.container_manager import SingleContainerManager, SwitchEvent
from managers.containers import State
from managers.expect import duration, expect
from managers.runs import check_mode
from managers.operations import Operation
from managers.runtime import Runtime
from managers.start_times import StartTimes
from models import exports, render
from models.outputs import file_for as output_file, joined as joined_outputs
from models.config import FIELDS, MODE_LABELS, MODES, AppConfig, data_dir, load_config, lock_dir
from models.document import Document, open_path, select_pages
from models.errors import (ChatVLMError, ConfigError, HistoryError, InputError, NothingToExport, Superseded,
                           SwitchError)
from models.fields import sheet
from models.fields.score import Counts, total
from models.fields.template import Template
from models.i18n import LANGUAGES, Message, N_, _, language_from_env, n_, number, translate, translations
from models.result import OCRResult, PageResult

EXIT_SUPERSEDED = 3
# With --task fields these formats are one sheet for all the files, a row per file.
SHEET_FORMATS = ("xlsx", "csv", "json")

# One process, one person: the language every message is printed in (main() sets it from
# --lang or the environment).
LANG = "en"


def t(msgid: str, **params: Any) -> str:
    """Mark ``msgid`` for translation and render it in the CLI's language."""
    return Message(msgid, params).render(LANG)


def tn(singular: str, plural: str, n: int, **params: Any) -> str:
    """A sentence with a count ``{n}``, in the CLI's language and its plural rule."""
    return n_(singular, plural, n, **params).render(LANG)


# argparse's own words (usage, its errors) looked up in this catalog: argparse asks gettext's
# process-wide domain, which this one-person process may own (the app never imports cli.py).
ARGPARSE_TEXTS = (
    N_("usage: "), N_("positional arguments"), N_("options"), N_("show this help message and exit"),
    N_("%(prog)s: error: %(message)s\n"), N_("argument %(argument_name)s: %(message)s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"), N_("the following arguments are required: %s"),
    N_("unrecognized arguments: %s"), N_("expected one argument"), N_("invalid %(type)s value: %(value)r"),
    N_("one of the arguments %s is required"), N_("not allowed with argument %s"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
)


def argparse_text(text: str) -> str:
    return translations(LANG).gettext(text)


def tr(value: Any) -> str:
    """A Message, an error raised with one, or plain text, in the CLI's language."""
    return translate(value, LANG)


def local(text: Any) -> str:
    """Config text (a model's name): plain, a Localized or ``{en: …, ru: …}``, in the CLI's language."""
    if isinstance(text, Mapping):
        return text.get(LANG) or text.get("en") or next(iter(text.values()), "")
    return tr(text)


def percent(fraction: float) -> str:
    return t("{value:.2f}%", value=100 * fraction)


def choice_label(choice: runs.Choice) -> str:
    """"tesseract (CPU, text)": a model of an evaluation as the tables name it."""
    return f"{choice.key} ({tr(MODE_LABELS.get(choice.mode, choice.mode))}, {choice.task})"


class ProgressBar:
    """A one-line bar on a terminal; one line per page when stderr is a file or a pipe."""

    def __init__(self, label: str, total: int, stream=None):
        # sys.stderr as it is now, not as it was on import (a test may have swapped it since).
        self.label, self.total, self.stream = label, total, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self._draw(0, None)

    def __call__(self, done: int, total: int, page: PageResult) -> None:
        self._draw(done, page)
        if page.error:
            self._line(t("page {page}: {error}", page=page.number, error=tr(page.error)))

    def _draw(self, done: int, page: PageResult | None) -> None:
        width = 24
        filled = width * done // max(self.total, 1)
        elapsed = time.perf_counter() - self.started
        bar = t("{label} [{bar}] {done}/{total} pages {seconds:.1f}s", label=self.label,
                bar="#" * filled + "." * (width - filled), done=str(done), total=str(self.total), seconds=elapsed)
        if self.tty:
            self.stream.write("\r" + bar + ("\n" if done == self.total else ""))
            self.stream.flush()
        elif page is not None:
            self.stream.write(bar + "\n")

    def _line(self, text: str) -> None:
        self.stream.write(("\n" if self.tty else "") + text + "\n")


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last one, a free sentence, is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]).rstrip())


def cmd_models(args, config) -> int:
    host = probe_host(config)
    states = container_states(config) if host.docker_error is None else {}
    times = StartTimes(lock_dir(config))
    # This process holds no local model, and what the app keeps in RAM is the app's: a local
    # load from here reads the weights from disk.
    rows = [(t("KEY"), t("NAME"), t("MODE"), t("VRAM"), t("EXPECTED"), t("AVAILABLE HERE"))]
    for key, model in config.models.items():
        for mode in model.modes:
            reason = why_not(model, mode, host, config)
            vram = t("{gb:g} GB", gb=model.vram_gb) if model.vram_gb else "-"
            expected = expect(config, times, key, mode, state=states.get(key), device=host.local_device)
            rows.append((key, local(model.name), tr(MODE_LABELS[mode]), vram, tr(expected.message),
                         tr(reason) if reason else t("yes")))
    print_table(rows)
    return 0


def container_states(config: AppConfig) -> dict[str, State]:
    """Each managed vLLM model's container state; none where Docker cannot be read (then the
    expected time is a cold start's)."""
    try:
        return {key: status.state for key, status in SingleContainerManager(config).status().items()}
    except ChatVLMError:
        return {}


def print_event(event: SwitchEvent) -> None:
    elapsed = number(event.elapsed, LANG, 1).rjust(6)
    if event.estimate and event.stage in ("starting", "waking"):
        line = t("[{elapsed}s] {message} (usually ready in {time})", elapsed=elapsed,
                 message=tr(event.message), time=duration(event.estimate))
    else:
        line = t("[{elapsed}s] {message}", elapsed=elapsed, message=tr(event.message))
    if event.log_line:
        line += f" | {event.log_line[:120]}"
    print(line, file=sys.stderr, flush=True)


def wait_for(op: Operation):
    """Follow a switch, load or stop to its end; Ctrl-C cancels it (and cleans up) first."""
    try:
        return op.wait(print_event)
    except KeyboardInterrupt:
        op.cancel.set()
        print(t("cancelling…"), file=sys.stderr, flush=True)
        with contextlib.suppress(ChatVLMError):
            op.wait()
        raise


def cmd_switch(args, config) -> int:
    config.model(args.model)  # an unknown model is bad usage (exit 2), not a failed switch
    try:
        status = wait_for(runs.switch(Runtime(config), args.model))
    except Superseded as exc:
        print(tr(exc), file=sys.stderr)
        return EXIT_SUPERSEDED
    except ChatVLMError as exc:
        print(t("error: {error}", error=tr(exc)), file=sys.stderr)
        if isinstance(exc, SwitchError) and exc.log_tail:
            print(t("--- last log lines ---"), file=sys.stderr)
            print(exc.log_tail.rstrip(), file=sys.stderr)
        return 1
    print(t("{key} ready on port {port}", key=status.key, port=str(status.port)))
    return 0


def cmd_status(args, config) -> int:
    statuses = SingleContainerManager(config).status()
    rows = [(t("MODEL"), t("STATE"), t("PORT"), t("SINCE"), t("DETAIL"))]
    for key, st in statuses.items():
        rows.append((key, state_name(st.state.value), str(st.port or "-"), st.since or "-", tr(st.detail)))
    print_table(rows)
    return 0


def state_name(state: str) -> str:
    """A container's state (managers.containers.State) in the CLI's language."""
    names = {"stopped": t("stopped"), "starting": t("starting"), "ready": t("ready"), "stopping": t("stopping"),
             "failed": t("failed"), "asleep": t("asleep")}
    return names.get(state, state)


def cmd_stop(args, config) -> int:
    stopped = wait_for(runs.stop(Runtime(config)))
    print(t("stopped: {models}", models=", ".join(stopped)) if stopped else t("nothing was running"))
    return 0


def cmd_logs(args, config) -> int:
    sys.stdout.write(SingleContainerManager(config).logs(args.model, args.tail))
    return 0


def cmd_worker(args, config) -> int:
    """Read the API's jobs from Redis on this machine until Ctrl-C or SIGTERM (the job being
    read is handed back, for another worker to resume), then exit 0; 1 when it cannot start."""
    from managers.jobs import redis_queue, remote_worker  # Redis and RQ load only for this command

    if args.mode and not args.model:
        raise ConfigError(_("--mode is the mode of the model given with --model; give both, or neither."))
    if config.jobs.backend != "redis":
        print(t("error: {error}", error=t("cli.py worker reads the API's jobs from Redis; set jobs.backend: redis "
                                          "and jobs.redis_url in the config (as the API's).")), file=sys.stderr)
        return 1
    # An unknown model or mode is bad usage (exit 2); the mode resolved here is the one made ready.
    mode = check_mode(config, args.model, args.mode) if args.model else None
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"

    def ready() -> None:
        print(t("worker {name} reads jobs from {url}; Ctrl-C stops it", name=name,
                url=redis_queue.shown(config.jobs.redis_url)), file=sys.stderr, flush=True)

    try:
        remote_worker.serve(config, name, args.model, mode, on_ready=ready)
    except ChatVLMError as exc:
        print(t("error: {error}", error=tr(exc)), file=sys.stderr)
        return 1
    print(t("worker {name} stopped", name=name), file=sys.stderr, flush=True)
    # The job was handed back; a page abandoned in flight may still hold a thread on its
    # socket until the model server's timeout (requests.timeout_s), which is not waited for.
    os._exit(0)


def needs_out(fmt: str, out: Path | None, one_sheet: bool = False) -> None:
    """Refuse a binary format without --out; a fields sheet as CSV or JSON can go to stdout."""
    if fmt in exports.FORMATS and not out and not (one_sheet and fmt != "xlsx"):
        raise ChatVLMError(_("{format} is a binary format: give --out DIR.", format=fmt))


def out_folder(out: Path | None) -> None:
    """Refuse --out where no folder can be made (a file is there, or above it), before anything is read."""
    for path in (out, *out.parents) if out else ():
        if path.exists():
            if not path.is_dir():
                raise InputError(_("--out must be a folder, and {path} is a file; give a folder to write into.",
                                   path=str(path)))
            return


def fields_template(config: AppConfig, task: str | None, template: str | None) -> Template | None:
    """The template --task fields reads (None for other tasks); refused in one sentence when
    it is missing or unknown, or given without --task fields."""
    if task != FIELDS:
        if template:
            raise ChatVLMError(_("--template is for --task fields only."))
        return None
    if not template:
        raise ConfigError(_("--task fields needs --template T; the templates are: {known}.",
                            known=", ".join(config.templates)))
    return config.template(template)


def cmd_ocr(args, config) -> int:
    out_folder(args.out)
    template = fields_template(config, args.task, args.template)
    one_sheet = template is not None and args.format in SHEET_FORMATS
    needs_out(args.format, args.out, one_sheet)
    model = config.model(args.model)
    if args.endpoint:
        if model.vllm is None:
            raise ChatVLMError(_("{model} has no vLLM backend to send to an endpoint.", model=local(model.name)))
        remote = model.vllm.model_copy(update={"endpoint": args.endpoint})
        models = {**config.models, args.model: model.model_copy(update={"vllm": remote})}
        config = config.model_copy(update={"models": models})
        args.mode = "vllm"
    choice = runs.Choice(args.model, check_mode(config, args.model, args.mode), args.task, template=args.template)
    if template is None:
        model.task(args.task)  # an unknown task is refused before anything starts
    runtime = Runtime(config)  # this process's one, made from the config as the command changed it
    runs.make_ready(runtime, choice.key, choice.mode, on_event=print_event)  # the sidebar's path
    outputs: list[tuple[Path, OCRResult]] = []
    status = 0
    history = runtime.history
    try:
        for file in args.files:
            try:
                document = open_path(file, config.limits)
                indexes = select_pages(document, args.pages)
            except ChatVLMError as exc:
                print(t("error: {error}", error=tr(exc)), file=sys.stderr)
                status = 1
                continue
            bar = ProgressBar(Path(file).name, len(indexes))
            try:
                run = runs.read_document(runtime, choice, document.pages(indexes), on_page=bar, on_event=print_event)
            except ChatVLMError as exc:  # e.g. the model was taken away: the other files still count
                print(t("error: {file}: {error}", file=str(file), error=tr(exc)), file=sys.stderr)
                status = 1
                continue
            result = run.result
            if result.failed:
                status = 1
            outputs.append((Path(file), result))
            keep(history, run, document)
            if args.out and not one_sheet and not _write(args.out, outputs, args.format, config.templates,
                                                         lambda i: run.images.get(i) or document.page(i).image):
                status = 1
    finally:
        # The sheet is written once, at the end, or when an interrupt or a failure ends the
        # reading early: the rows of the documents read are kept either way.
        if one_sheet and outputs:
            status = max(status, put_sheet(args.out, outputs, template, args.format))
    if not args.out and not one_sheet and outputs:
        sys.stdout.write(joined_outputs([r for _, r in outputs], args.format, config.templates, LANG))
    say_warning(history)
    return status


def put_sheet(out: Path | None, outputs: list[tuple[Path, OCRResult]], template: Template, fmt: str) -> int:
    """The documents' fields as one sheet, ``fields.<fmt>`` under ``out`` or on stdout: 0, or
    1 when it cannot be made (said in one sentence)."""
    try:
        data = sheet.sheet_bytes([(file.name, result) for file, result in outputs], template, fmt, LANG)
    except ChatVLMError as exc:
        print(t("error: {error}", error=tr(exc)), file=sys.stderr)
        return 1
    if out is None:
        sys.stdout.write(data.decode("utf-8-sig"))  # the byte-order mark is for Excel opening a file
        return 0
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"fields.{fmt}"
    target.write_bytes(data)
    print(t("wrote {path}", path=str(target)), file=sys.stderr)
    return 0


def keep(history: History, run: runs.Run, document: Document) -> None:
    """Keep a finished run in the history; a history that cannot be written never fails the reading."""
    try:
        history.add(run, document.name, document.data)
    except ChatVLMError as exc:
        print(t("error: {error}", error=tr(exc)), file=sys.stderr)


def say_warning(history: History) -> None:
    if history.warning:
        print(tr(history.warning), file=sys.stderr)


def parse_choices(spec: str, task: str | None, template: str | None = None) -> list[runs.Choice]:
    """``KEY[:MODE][,KEY[:MODE]…]`` → choices, each with ``task`` (and the fields task's ``template``)."""
    choices = []
    for entry in spec.split(","):
        key, colon, mode = entry.strip().partition(":")
        if not key or (colon and mode not in MODES):
            raise ChatVLMError(_("'{entry}' is not KEY or KEY:MODE (MODE: {modes}).", entry=entry,
                                 modes=", ".join(MODES)))
        choices.append(runs.Choice(key, mode or None, task, template=template))
    return choices


def cmd_eval(args, config) -> int:
    out_folder(args.out)
    template = fields_template(config, args.task, args.template)
    choices = [evaluation.resolve(config, c) for c in parse_choices(args.models, args.task, args.template)]
    chart = (args.out / eval_report.CHART_NAME).resolve()  # where --out is DIR: a chart, not a document
    samples, errors = evaluation.folder_samples(args.folder, config.limits, skip={chart}, template=template)
    for error in errors:
        print(t("error: {error}", error=tr(error)), file=sys.stderr)
    if not samples:
        raise InputError(_("'{folder}' holds no document to read (PNG, JPEG, TIFF, BMP, WebP or PDF).",
                           folder=str(args.folder)))
    runtime = Runtime(config)
    result = evaluation.evaluate(
        runtime, choices, samples, on_event=print_event,
        on_read=lambda choice, sample: ProgressBar(f"{choice.key} {sample.name}", len(sample.pages())))
    history = runtime.history
    for model in result.models:
        if model.error:
            print(t("error: {model}: {error}", model=choice_label(model.choice), error=tr(model.error)),
                  file=sys.stderr)
        for row in model.rows:
            if row.error:
                print(t("error: {model}: {document}: {error}", model=choice_label(model.choice),
                        document=row.sample.name, error=tr(row.error)), file=sys.stderr)
            else:
                keep(history, row.run, row.sample.document)
        print_scores(model)
    say_warning(history)
    for path in eval_report.write(result, args.out, LANG):
        print(t("wrote {path}", path=str(path)), file=sys.stderr)
    return 1 if errors or result.failed else 0


def print_scores(model: evaluation.ModelResult) -> None:
    """The model's line, then its scores over all documents and per document; a blank line."""
    print(choice_label(model.choice))
    if model.error:
        print(t("not evaluated: it could not be made ready") + "\n")
        return
    rows = [(t("DOCUMENT"), t("PAGES"), t("FAILED"), t("SECONDS"), t("PAGES/MIN"), t("CER"), t("WER"), t("NOTE")),
            _score_cells(t("all documents"), model, t("micro-averaged over the pages with truth"))]
    rows += [_score_cells(row.sample.name, row, tr(row.note)) for row in model.rows]
    print_table(rows)
    fields = model.fields
    if fields is not None:
        print()
        rows = [(t("FIELD"), t("DOCUMENTS"), t("TRUTHS"), t("GIVEN"), t("RIGHT"), t("PRECISION"), t("RECALL"),
                 t("EXACT MATCH")), _field_cells(t("all fields"), total(fields))]
        print_table(rows + [_field_cells(name, counts) for name, counts in fields.items()])
    print()


def _field_cells(name: str, counts: Counts) -> tuple[str, ...]:
    rates = (counts.precision, counts.recall, counts.exact_match)
    return (name, str(counts.documents), str(counts.truths), str(counts.given), str(counts.right),
            *("-" if rate is None else percent(rate) for rate in rates))


def _score_cells(name: str, part: evaluation.ModelResult | evaluation.Row, note: str) -> tuple[str, ...]:
    per_min, score = part.pages_per_min, part.score
    rates = ("-", "-") if score is None else (percent(score.cer), percent(score.wer))
    return (name, str(part.pages), str(part.failed), number(part.seconds, LANG, 1),
            "-" if per_min is None else number(per_min, LANG, 1), *rates, note)


def cmd_history(args, config) -> int:
    history = Runtime(config).history
    try:
        if args.delete is not None:
            if not history.delete(args.delete):
                raise HistoryError(_("There is no run {id} in the history.", id=str(args.delete)))
            print(t("deleted run {id}", id=str(args.delete)), file=sys.stderr)
        elif args.export is not None:
            out_folder(args.out)
            stored = history.get(args.export)
            outputs = [(Path(stored.entry.name), stored.result)]
            # A fields run in a sheet's format is its sheet, as `ocr --task fields` writes it.
            one_sheet = stored.result.task == FIELDS and args.format in SHEET_FORMATS
            needs_out(args.format, args.out, one_sheet)
            if one_sheet:
                return put_sheet(args.out, outputs, config.template(stored.result.template), args.format)
            if args.out:
                if not _write(args.out, outputs, args.format, config.templates, stored.page_image(config.limits)):
                    return 1
            else:
                sys.stdout.write(joined_outputs([r for _, r in outputs], args.format, config.templates, LANG))
        else:
            list_runs(history.list(args.search, args.limit), args.search)
    finally:
        say_warning(history)
    return 0


def cmd_api_key(args, config) -> int:
    keys = APIKeys(data_dir())
    if args.action == "create":
        print(keys.create(args.name))  # the only time the key is shown: only its hash is kept
        print(t("made the API key {name}; keep it now, it is not shown again (send it as Authorization: "
                "Bearer KEY)", name=args.name), file=sys.stderr)
    elif args.action == "revoke":
        keys.revoke(args.name)
        print(t("revoked the API key {name}; requests with it are refused from now on", name=args.name),
              file=sys.stderr)
    elif listed := keys.listed():
        print_table([(t("NAME"), t("CREATED")), *((name, time.strftime("%Y-%m-%d %H:%M", time.localtime(made)))
                                                   for name, made in listed)])
    else:
        print(t("No API keys yet; the API answers only its own machine (cli.py api-key create NAME)."),
              file=sys.stderr)
    return 0


def list_runs(entries: list[Entry], search: str | None) -> None:
    if not entries:
        print(t("No kept run's file name contains '{search}'.", search=search) if search
              else t("No runs are kept yet."), file=sys.stderr)
        return
    rows = [(t("ID"), t("WHEN"), t("FILE"), t("PAGES"), t("MODEL"), t("MODE"), t("TASK"), t("SECONDS"))]
    # WHEN stays one sortable form in every language (a script may read it).
    rows += [(str(e.id), e.created.strftime("%Y-%m-%d %H:%M"), e.name, str(e.pages), e.model,
              tr(MODE_LABELS.get(e.mode, e.mode)), e.task, number(e.seconds, LANG, 1)) for e in entries]
    print_table(rows)


def _write(out: Path, outputs: list[tuple[Path, OCRResult]], fmt: str, templates: Mapping[str, Template],
           page_image: exports.PageImage) -> bool:
    """Write the newest output under ``out``, named after its input; an input whose name an
    earlier one took (a.png and a.pdf, two dirs/x.png) is written as "a (2)" and said so.
    False when its file could not be made (said in one sentence; the other inputs go on)."""
    file, result = outputs[-1]
    stem = exports.unique_stems([f.name for f, _ in outputs])[-1]
    try:
        made = output_file(result, fmt, stem + file.suffix, page_image, templates, LANG)
    except NothingToExport as exc:
        print(f"{file.name}: {tr(exc)}", file=sys.stderr)
        return True
    except ChatVLMError as exc:
        print(t("error: {error}", error=tr(exc)), file=sys.stderr)
        return False
    out.mkdir(parents=True, exist_ok=True)
    target = out / made.name
    target.write_bytes(made.data)
    print(t("wrote {path} ({file} has the name of an earlier input)", path=str(target), file=str(file))
          if stem != file.stem else t("wrote {path}", path=str(target)), file=sys.stderr)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description=t("ChatVLMLLM without a browser: list models, read documents, keep and export runs, "
                                                  "score models. Results go to standard output (or --out); progress and messages "
                                                  "to standard error. Exit codes: 0 all pages read, 1 some pages or files failed, "
                                                  "2 bad usage."),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=t("config file (default: $CHATVLMLLM_CONFIG or config.yaml)"))
    parser.add_argument("--lang", choices=LANGUAGES,
                        help=t("language of messages (default: from LANGUAGE, LC_ALL, LC_MESSAGES or LANG)"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help=t("list models, their modes and whether they run here"))
    models.set_defaults(run=cmd_models)

    ocr = commands.add_parser("ocr", help=t("read documents (images or PDFs) into txt, md or json"))
    ocr.add_argument("files", nargs="+", metavar="FILE", help=t("PNG, JPEG, TIFF, BMP, WebP or PDF"))
    ocr.add_argument("--model", required=True, metavar="KEY", help=t("a model key from `cli.py models`"))
    ocr.add_argument("--mode", choices=MODES, help=t("default: the model's first backend"))
    ocr.add_argument("--task", metavar="T", help=t("a task of the model (default: its first), or fields"))
    ocr.add_argument("--template", metavar="T",
                     help=t("with --task fields: the template whose fields are read (config.yaml templates)"))
    ocr.add_argument("--pages", metavar="RANGE", help=t("pages to read, e.g. 1-20 or 1,3,5-7"))
    ocr.add_argument("--format", choices=(*render.FORMATS, *exports.FORMATS), default="txt",
                     help=t("txt, md, json; or, with --out, csv (a file per table), xlsx, docx, pdf (searchable); "
                            "with --task fields, xlsx, csv or json is one sheet of all the files, fields.<format>"))
    ocr.add_argument("--out", type=Path, metavar="DIR", help=t("write FILE.<format> here instead of stdout"))
    ocr.add_argument("--endpoint", metavar="URL",
                     help=t("send pages to this OpenAI-compatible server instead of a managed container"))
    ocr.set_defaults(run=cmd_ocr)

    score = commands.add_parser("eval", help=t("score models on documents whose true text is known"),
                                description=t("Read every document in DIR with each model, one model "
                                "after another, and score each page against NAME.txt beside the document "
                                "(its true text, pages split by form feed): CER and WER, micro-averaged. "
                                "Writes eval.csv and eval.png into --out. With --task fields --template T, "
                                "each document's fields are scored against NAME.fields.json beside it "
                                "(a JSON object of field names and values as printed): precision, recall and "
                                "exact match per field, also in eval_fields.csv."))
    score.add_argument("folder", type=Path, metavar="DIR",
                       help=t("documents (images, PDFs) with NAME.txt (or NAME.fields.json) beside each"))
    score.add_argument("--models", required=True, metavar="KEY[:MODE][,KEY[:MODE]…]",
                       help=t("the models to compare, e.g. tesseract,qwen3_vl_2b:vllm"))
    score.add_argument("--task", metavar="T", help=t("a task every model has (default: each model's first), or fields"))
    score.add_argument("--template", metavar="T",
                       help=t("with --task fields: the template whose fields NAME.fields.json holds"))
    score.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                       help=t("where eval.csv and eval.png go (default: the current folder)"))
    score.set_defaults(run=cmd_eval)

    history = commands.add_parser("history", help=t("list the runs kept, export one again, or delete one"))
    history.add_argument("--search", metavar="TEXT", help=t("only files whose name contains TEXT (any case)"))
    history.add_argument("--limit", type=int, default=200, metavar="N", help=t("the newest N runs (default 200)"))
    action = history.add_mutually_exclusive_group()
    action.add_argument("--export", type=int, metavar="ID", help=t("write run ID again, as `ocr --format` does"))
    action.add_argument("--delete", type=int, metavar="ID", help=t("delete run ID"))
    history.add_argument("--format", choices=exports.ALL_FORMATS, default="txt", help=t("as for ocr"))
    history.add_argument("--out", type=Path, metavar="DIR", help=t("write FILE.<format> here instead of stdout"))
    history.set_defaults(run=cmd_history)

    switch = commands.add_parser("switch", help=t("make MODEL the one vLLM model running (stops the others)"))
    switch.add_argument("model", metavar="MODEL", help=t("a model key with a vllm backend"))
    switch.set_defaults(run=cmd_switch)
    status = commands.add_parser("status", help=t("state of every vLLM model container"))
    status.set_defaults(run=cmd_status)
    stop = commands.add_parser("stop", help=t("stop the running vLLM model (after pages in progress)"))
    stop.set_defaults(run=cmd_stop)
    logs = commands.add_parser("logs", help=t("the log of a model's container"))
    logs.add_argument("model", metavar="MODEL")
    logs.add_argument("--tail", type=int, default=100, metavar="N", help=t("last N lines (default 100)"))
    logs.set_defaults(run=cmd_logs)
    api_key = commands.add_parser("api-key", help=t("create, list or revoke the HTTP API's keys (api.py)"))
    key_actions = api_key.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = key_actions.add_parser("create", help=t("make a key called NAME and print it (once: only its hash is kept)"))
    create.add_argument("name", metavar="NAME", help=t("who the key is for, e.g. tender-monitor"))
    key_actions.add_parser("list", help=t("the keys' names and when they were made"))
    revoke = key_actions.add_parser("revoke", help=t("remove the key called NAME; requests with it are refused"))
    revoke.add_argument("name", metavar="NAME")
    api_key.set_defaults(run=cmd_api_key)
    worker = commands.add_parser("worker", help=t("read the API's jobs from Redis on this machine (jobs.backend: redis)"),
                                 description=t("Read jobs the API (jobs.backend: redis) hands out, with this "
                                               "machine's models, until Ctrl-C or SIGTERM; the job being read is "
                                               "then handed back and another worker resumes it."))
    worker.add_argument("--model", metavar="KEY", help=t("make this model ready at start, so this worker holds it "
                                                         "and gets its jobs first"))
    worker.add_argument("--mode", choices=MODES, help=t("the model's mode (default: its first backend)"))
    worker.add_argument("--name", metavar="NAME", help=t("the worker's name, unique on the Redis (default: "
                                                         "HOST-PID)"))
    worker.set_defaults(run=cmd_worker)
    # `cli.py ocr --lang ru …` too; unset, it leaves the top one
    for command in [*commands.choices.values(), *key_actions.choices.values()]:
        command.add_argument("--lang", choices=LANGUAGES, default=argparse.SUPPRESS,
                             help=t("language of messages (default: from LANGUAGE, LC_ALL, LC_MESSAGES or LANG)"))
    return parser


def asked_language(argv: list[str]) -> str | None:
    """--lang's value, read before the parser is built so that --help speaks it too."""
    for n, arg in enumerate(argv):
        value = argv[n + 1] if arg == "--lang" and n + 1 < len(argv) else arg.removeprefix("--lang=")
        if (arg == "--lang" or arg.startswith("--lang=")) and value in LANGUAGES:
            return value
    return None


def main(argv: list[str] | None = None) -> int:
    global LANG
    LANG = asked_language(sys.argv[1:] if argv is None else argv) or language_from_env()
    argparse._ = argparse_text
    args = build_parser().parse_args(argv)  # its help and its errors are in that language already
    try:
        config = load_config(args.config)
        return args.run(args, config)
    except ChatVLMError as exc:
        print(t("error: {error}", error=tr(exc)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(t("error: interrupted; pages already written are kept."), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
