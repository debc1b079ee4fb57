#!/usr/bin/env python3
"""ChatVLMLLM without a browser: list models, read documents to txt, md or json (and the
formats of models/exports), list or export again the runs the history keeps, and score
models against documents whose true text is known.

Results go to standard output (or files under --out); progress and messages go to
standard error. Exit codes: 0 all pages read, 1 some pages or files failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from managers import eval_report, evaluation, runs
from managers.availability import probe_host, why_not
from managers.history import Entry, History
from managers.container_manager import SingleContainerManager, SwitchEvent
from managers.runs import check_mode
from managers.operations import Operation
from models import exports, render
from models.config import MODE_LABELS, MODES, load_config
from models.document import Document, open_path, select_pages
from models.errors import ChatVLMError, HistoryError, InputError, NothingToExport, Superseded, SwitchError
from models.result import OCRResult, PageResult

EXIT_SUPERSEDED = 3


class ProgressBar:
    """A one-line bar on a terminal; one line per page when stderr is a file or a pipe."""

    def __init__(self, label: str, total: int, stream=sys.stderr):
        self.label, self.total, self.stream = label, total, stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self._draw(0, None)

    def __call__(self, done: int, total: int, page: PageResult) -> None:
        self._draw(done, page)
        if page.error:
            self._line(f"page {page.number}: {page.error}")

    def _draw(self, done: int, page: PageResult | None) -> None:
        width = 24
        filled = width * done // max(self.total, 1)
        elapsed = time.perf_counter() - self.started
        bar = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} pages {elapsed:.1f}s"
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
    rows = [("KEY", "NAME", "MODE", "VRAM", "AVAILABLE HERE")]
    for key, model in config.models.items():
        for mode in model.modes:
            reason = why_not(model, mode, host, config)
            vram = f"{model.vram_gb:g} GB" if model.vram_gb else "-"
            rows.append((key, model.name, MODE_LABELS[mode], vram, reason or "yes"))
    print_table(rows)
    return 0


def print_event(event: SwitchEvent) -> None:
    line = f"[{event.elapsed:6.1f}s] {event.message}"
    if event.estimate and event.stage == "starting":
        line += f" (usually ready in {event.estimate:.0f}s)"
    if event.log_line:
        line += f" | {event.log_line[:120]}"
    print(line, file=sys.stderr, flush=True)


def wait_for(op: Operation):
    """Follow a switch, load or stop to its end; Ctrl-C cancels it (and cleans up) first."""
    try:
        return op.wait(print_event)
    except KeyboardInterrupt:
        op.cancel.set()
        print("cancelling…", file=sys.stderr, flush=True)
        with contextlib.suppress(ChatVLMError):
            op.wait()
        raise


def cmd_switch(args, config) -> int:
    config.model(args.model)  # an unknown model is bad usage (exit 2), not a failed switch
    try:
        status = wait_for(runs.switch(config, args.model))
    except Superseded as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_SUPERSEDED
    except ChatVLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, SwitchError) and exc.log_tail:
            print("--- last log lines ---\n" + exc.log_tail.rstrip(), file=sys.stderr)
        return 1
    print(f"{status.key} ready on port {status.port}")
    return 0


def cmd_status(args, config) -> int:
    statuses = SingleContainerManager(config).status()
    rows = [("MODEL", "STATE", "PORT", "SINCE", "DETAIL")]
    for key, st in statuses.items():
        rows.append((key, st.state.value, str(st.port or "-"), st.since or "-", st.detail))
    print_table(rows)
    return 0


def cmd_stop(args, config) -> int:
    stopped = wait_for(runs.stop(config))
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_logs(args, config) -> int:
    sys.stdout.write(SingleContainerManager(config).logs(args.model, args.tail))
    return 0


def needs_out(fmt: str, out: Path | None) -> None:
    if fmt in exports.FORMATS and not out:
        raise ChatVLMError(f"{fmt} is a binary format: give --out DIR.")


def cmd_ocr(args, config) -> int:
    needs_out(args.format, args.out)
    model = config.model(args.model)
    if args.endpoint:
        if model.vllm is None:
            raise ChatVLMError(f"{model.name} has no vLLM backend to send to an endpoint.")
        remote = model.vllm.model_copy(update={"endpoint": args.endpoint})
        models = {**config.models, args.model: model.model_copy(update={"vllm": remote})}
        config = config.model_copy(update={"models": models})
        args.mode = "vllm"
    choice = runs.Choice(args.model, check_mode(config, args.model, args.mode), args.task)
    model.task(args.task)  # an unknown task is refused before anything starts
    runs.make_ready(config, choice.key, choice.mode, on_event=print_event)  # the sidebar's path
    outputs: list[tuple[Path, OCRResult]] = []
    status = 0
    history = History(config)
    for file in args.files:
        try:
            document = open_path(file, config.limits)
            indexes = select_pages(document, args.pages)
        except ChatVLMError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        bar = ProgressBar(Path(file).name, len(indexes))
        try:
            run = runs.read_document(config, choice, document.pages(indexes), on_page=bar, on_event=print_event)
        except ChatVLMError as exc:  # e.g. the model was taken away: the other files still count
            print(f"error: {file}: {exc}", file=sys.stderr)
            status = 1
            continue
        result = run.result
        if result.failed:
            status = 1
        outputs.append((Path(file), result))
        keep(history, run, document)
        if args.out:
            _write(args.out, outputs, args.format, lambda i: run.images.get(i) or document.page(i).image)
    if not args.out and outputs:
        sys.stdout.write(_joined(outputs, args.format))
    say_warning(history)
    return status


def keep(history: History, run: runs.Run, document: Document) -> None:
    """Keep a finished run in the history; a history that cannot be written never fails the reading."""
    try:
        history.add(run, document.name, document.data)
    except ChatVLMError as exc:
        print(f"error: {exc}", file=sys.stderr)


def say_warning(history: History) -> None:
    if history.warning:
        print(history.warning, file=sys.stderr)


def parse_choices(spec: str, task: str | None) -> list[runs.Choice]:
    """``KEY[:MODE][,KEY[:MODE]…]`` → choices, each with ``task``."""
    choices = []
    for entry in spec.split(","):
        key, colon, mode = entry.strip().partition(":")
        if not key or (colon and mode not in MODES):
            raise ChatVLMError(f"'{entry}' is not KEY or KEY:MODE (MODE: {', '.join(MODES)}).")
        choices.append(runs.Choice(key, mode or None, task))
    return choices


def cmd_eval(args, config) -> int:
    choices = [evaluation.resolve(config, c) for c in parse_choices(args.models, args.task)]
    chart = (args.out / eval_report.CHART_NAME).resolve()  # where --out is DIR: a chart, not a document
    samples, errors = evaluation.folder_samples(args.folder, config.limits, skip={chart})
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not samples:
        raise InputError(f"'{args.folder}' holds no document to read (PNG, JPEG, TIFF, BMP, WebP or PDF).")
    result = evaluation.evaluate(
        config, choices, samples, on_event=print_event,
        on_read=lambda choice, sample: ProgressBar(f"{choice.key} {sample.name}", len(sample.pages())))
    history = History(config)
    for model in result.models:
        if model.error:
            print(f"error: {model.label}: {model.error}", file=sys.stderr)
        for row in model.rows:
            if row.error:
                print(f"error: {model.label}: {row.sample.name}: {row.error}", file=sys.stderr)
            else:
                keep(history, row.run, row.sample.document)
        print_scores(model)
    say_warning(history)
    for path in eval_report.write(result, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 1 if errors or result.failed else 0


def print_scores(model: evaluation.ModelResult) -> None:
    """The model's line, then its scores over all documents and per document; a blank line."""
    print(model.label)
    if model.error:
        print("not evaluated: it could not be made ready\n")
        return
    rows = [("DOCUMENT", "PAGES", "FAILED", "SECONDS", "PAGES/MIN", "CER", "WER", "NOTE"),
            _score_cells("all documents", model, "micro-averaged over the pages with truth")]
    rows += [_score_cells(row.sample.name, row, row.note) for row in model.rows]
    print_table(rows)
    print()


def _score_cells(name: str, part: evaluation.ModelResult | evaluation.Row, note: str) -> tuple[str, ...]:
    per_min, score = part.pages_per_min, part.score
    rates = ("-", "-") if score is None else (f"{score.cer:.2%}", f"{score.wer:.2%}")
    return (name, str(part.pages), str(part.failed), f"{part.seconds:.1f}",
            "-" if per_min is None else f"{per_min:.1f}", *rates, note)


def cmd_history(args, config) -> int:
    history = History(config)
    try:
        if args.delete is not None:
            if not history.delete(args.delete):
                raise HistoryError(f"There is no run {args.delete} in the history.")
            print(f"deleted run {args.delete}", file=sys.stderr)
        elif args.export is not None:
            needs_out(args.format, args.out)
            stored = history.get(args.export)
            outputs = [(Path(stored.entry.name), stored.result)]
            if args.out:
                _write(args.out, outputs, args.format, stored.page_image(config.limits))
            else:
                sys.stdout.write(_joined(outputs, args.format))
        else:
            list_runs(history.list(args.search, args.limit), args.search)
    finally:
        say_warning(history)
    return 0


def list_runs(entries: list[Entry], search: str | None) -> None:
    if not entries:
        print(f"No kept run's file name contains '{search}'." if search else "No runs are kept yet.",
              file=sys.stderr)
        return
    rows = [("ID", "WHEN", "FILE", "PAGES", "MODEL", "MODE", "TASK", "SECONDS")]
    rows += [(str(e.id), e.created.strftime("%Y-%m-%d %H:%M"), e.name, str(e.pages), e.model,
              MODE_LABELS.get(e.mode, e.mode), e.task, f"{e.seconds:.1f}") for e in entries]
    print_table(rows)


def _write(out: Path, outputs: list[tuple[Path, OCRResult]], fmt: str, page_image: exports.PageImage) -> None:
    """Write the newest output under ``out``, named after its input; an input whose name an
    earlier one took (a.png and a.pdf, two dirs/x.png) is written as "a (2)" and said so."""
    file, result = outputs[-1]
    stem = exports.unique_stems([f.name for f, _ in outputs])[-1]
    try:
        made = exports.file_for(result, fmt, stem + file.suffix, page_image)
    except NothingToExport as exc:
        print(f"{file.name}: {exc}", file=sys.stderr)
        return
    out.mkdir(parents=True, exist_ok=True)
    target = out / made.name
    target.write_bytes(made.data)
    renamed = f" ({file} has the name of an earlier input)" if stem != file.stem else ""
    print(f"wrote {target}{renamed}", file=sys.stderr)


def _joined(outputs: list[tuple[Path, OCRResult]], fmt: str) -> str:
    if fmt == "json":
        results = [json.loads(render.json(r)) for _, r in outputs]
        return json.dumps(results[0] if len(results) == 1 else results, ensure_ascii=False, indent=2) + "\n"
    separator = render.PAGE_BREAK if fmt == "txt" else "\n\n---\n\n"
    return separator.join(render.render(r, fmt) for _, r in outputs) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cli.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: $CHATVLMLLM_CONFIG or config.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list models, their modes and whether they run here")
    models.set_defaults(run=cmd_models)

    ocr = commands.add_parser("ocr", help="read documents (images or PDFs) into txt, md or json")
    ocr.add_argument("files", nargs="+", metavar="FILE", help="PNG, JPEG, TIFF, BMP, WebP or PDF")
    ocr.add_argument("--model", required=True, metavar="KEY", help="a model key from `cli.py models`")
    ocr.add_argument("--mode", choices=MODES, help="default: the model's first backend")
    ocr.add_argument("--task", metavar="T", help="a task of the model (default: its first)")
    ocr.add_argument("--pages", metavar="RANGE", help="pages to read, e.g. 1-20 or 1,3,5-7")
    ocr.add_argument("--format", choices=(*render.FORMATS, *exports.FORMATS), default="txt",
                     help="txt, md, json; or, with --out, csv (a file per table), xlsx, docx, pdf (searchable)")
    ocr.add_argument("--out", type=Path, metavar="DIR", help="write FILE.<format> here instead of stdout")
    ocr.add_argument("--endpoint", metavar="URL",
                     help="send pages to this OpenAI-compatible server instead of a managed container")
    ocr.set_defaults(run=cmd_ocr)

    score = commands.add_parser("eval", help="score models on documents whose true text is known",
                                description="Read every document in DIR with each model, one model "
                                "after another, and score each page against NAME.txt beside the document "
                                "(its true text, pages split by form feed): CER and WER, micro-averaged. "
                                "Writes eval.csv and eval.png into --out.")
    score.add_argument("folder", type=Path, metavar="DIR", help="documents (images, PDFs) with NAME.txt beside each")
    score.add_argument("--models", required=True, metavar="KEY[:MODE][,KEY[:MODE]…]",
                       help="the models to compare, e.g. tesseract,qwen3_vl_2b:vllm")
    score.add_argument("--task", metavar="T", help="a task every model has (default: each model's first)")
    score.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                       help="where eval.csv and eval.png go (default: the current folder)")
    score.set_defaults(run=cmd_eval)

    history = commands.add_parser("history", help="list the runs kept, export one again, or delete one")
    history.add_argument("--search", metavar="TEXT", help="only files whose name contains TEXT (any case)")
    history.add_argument("--limit", type=int, default=200, metavar="N", help="the newest N runs (default 200)")
    action = history.add_mutually_exclusive_group()
    action.add_argument("--export", type=int, metavar="ID", help="write run ID again, as `ocr --format` does")
    action.add_argument("--delete", type=int, metavar="ID", help="delete run ID")
    history.add_argument("--format", choices=exports.ALL_FORMATS, default="txt", help="as for ocr")
    history.add_argument("--out", type=Path, metavar="DIR", help="write FILE.<format> here instead of stdout")
    history.set_defaults(run=cmd_history)

    switch = commands.add_parser("switch", help="make MODEL the one vLLM model running (stops the others)")
    switch.add_argument("model", metavar="MODEL", help="a model key with a vllm backend")
    switch.set_defaults(run=cmd_switch)
    status = commands.add_parser("status", help="state of every vLLM model container")
    status.set_defaults(run=cmd_status)
    stop = commands.add_parser("stop", help="stop the running vLLM model (after pages in progress)")
    stop.set_defaults(run=cmd_stop)
    logs = commands.add_parser("logs", help="the log of a model's container")
    logs.add_argument("model", metavar="MODEL")
    logs.add_argument("--tail", type=int, default=100, metavar="N", help="last N lines (default 100)")
    logs.set_defaults(run=cmd_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        return args.run(args, config)
    except ChatVLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; pages already written are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
