"""An evaluation written down: a CSV with one row per model and document, and a chart of
error rates and speed per model (PNG), for ``cli.py eval`` and the app alike. With the
fields task, a second CSV has one row per model and field (and one, field ``*``, for all
fields together), and the chart gains the fields' precision, recall and exact match.

CER and WER are fractions in the CSV (0.02 is 2%), beside the edits and reference lengths
they come from, so rows can be added up again (micro-averaged) over any selection. They are
empty where there is no truth, and for a model that could not be made ready, whose rows
carry its sentence in ``note`` instead. The fields' rates sit beside their counts in the
same way (models/fields/score.py defines them); a rate with nothing to divide by is empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

from managers.evaluation import Evaluation, ModelResult, Row
from models.config import MODE_LABELS
from models.fields.score import Counts, total
from models.i18n import _, number, translate
from models.metrics import Score

CSV_NAME, CHART_NAME, FIELDS_CSV_NAME = "eval.csv", "eval.png", "eval_fields.csv"
COLUMNS = ["model", "mode", "task", "document", "pages", "failed_pages", "seconds", "pages_per_min",
           "cer", "wer", "reference_chars", "char_edits", "reference_words", "word_edits", "note"]
FIELDS_COLUMNS = ["model", "mode", "task", "template", "field", "documents", "truths", "given", "right",
                  "exact", "precision", "recall", "exact_match"]
ALL_FIELDS = "*"
RATE_COLOURS = {"CER": "tab:blue", "WER": "tab:orange"}
FIELD_RATES = ((_("precision"), "tab:blue"), (_("recall"), "tab:orange"), (_("exact match"), "tab:green"))


def _score_columns(score: Score | None) -> dict[str, object]:
    if score is None:
        return {}
    return {"cer": score.cer, "wer": score.wer, "reference_chars": score.chars,
            "char_edits": score.char_edits, "reference_words": score.words, "word_edits": score.word_edits}


def _row(row: Row) -> dict[str, object]:
    per_min = row.pages_per_min
    return {"pages": row.pages, "failed_pages": row.failed, "seconds": round(row.seconds, 3),
            "pages_per_min": "" if per_min is None else round(per_min, 2), **_score_columns(row.score),
            "note": row.note}


def _csv(columns: list[str], rows: Iterable[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _first(model: ModelResult) -> dict[str, object]:
    return {"model": model.choice.key, "mode": model.choice.mode, "task": model.choice.task}


def csv_text(evaluation: Evaluation) -> str:
    def rows() -> Iterator[dict[str, object]]:
        for model in evaluation.models:
            if model.error:
                yield from ({**_first(model), "document": s.name, "note": model.error} for s in evaluation.samples)
            for row in model.rows:
                yield {**_first(model), "document": row.sample.name, **_row(row)}

    return _csv(COLUMNS, rows())


def _counts_columns(counts: Counts) -> dict[str, object]:
    rates = {"precision": counts.precision, "recall": counts.recall, "exact_match": counts.exact_match}
    return {"documents": counts.documents, "truths": counts.truths, "given": counts.given, "right": counts.right,
            "exact": counts.exact, **{k: "" if v is None else v for k, v in rates.items()}}


def fields_csv_text(evaluation: Evaluation) -> str:
    """Per model and field, its counts and rates; first all fields together (field ``*``)."""
    def rows() -> Iterator[dict[str, object]]:
        for model in evaluation.models:
            fields = model.fields
            if fields is not None:
                first = {**_first(model), "template": model.choice.template}
                yield {**first, "field": ALL_FIELDS, **_counts_columns(total(fields))}
                yield from ({**first, "field": name, **_counts_columns(counts)} for name, counts in fields.items())

    return _csv(FIELDS_COLUMNS, rows())


def _label(model: ModelResult, lang: str) -> str:
    return f"{model.choice.key}\n({translate(MODE_LABELS[model.choice.mode], lang)}, {model.choice.task})"


def chart_png(evaluation: Evaluation, lang: str = "en") -> bytes:
    """CER and WER per model side by side, and pages per minute; a model without a score
    (no truth, or not made ready) has no bars and says so. With true fields, a row below
    (or alone, where no text is scored) has each field's exact-match rate per model, and
    every model's precision, recall and exact match over all fields. Its words and numbers
    are written in ``lang``."""
    # Imported here: matplotlib takes most of a second to import, which every cli.py command
    # would otherwise pay for a chart only `cli.py eval` draws.
    from matplotlib.figure import Figure

    models = evaluation.models
    fielded = [m for m in models if m.fields is not None]
    text = not fielded or any(m.score is not None for m in models)
    names = list(fielded[0].fields) if fielded else []
    width = max(8.0, 2.6 * len(models) + 3, 0.3 * len(names) * len(fielded) + 5)
    rows = text + bool(fielded)
    figure = Figure(figsize=(width, 4.5 * rows), layout="constrained")
    panels = figure.subplots(rows, 2, width_ratios=[2, 1])
    panels = [panels] if rows == 1 else panels
    if text:
        _text_panels(models, *panels[0], lang)
    if fielded:
        _fields_panels(fielded, names, *panels[-1], lang)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _numbers_in(axes, lang: str) -> None:
    from matplotlib.ticker import FuncFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: number(value, lang)))


def _fields_panels(models: list[ModelResult], names: list[str], per_field, overall, lang: str) -> None:
    from matplotlib.patches import Patch

    width = 0.8 / len(models)
    for i, model in enumerate(models):
        rates = [model.fields[name].exact_match for name in names]
        places = [n - 0.4 + width * (i + 0.5) for n, rate in enumerate(rates) if rate is not None]
        per_field.bar(places, [100 * rate for rate in rates if rate is not None], width,
                      label=_label(model, lang).replace("\n", " "))
    per_field.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    per_field.set_title(_("Exact match per field, % (higher is better)").render(lang))
    per_field.set_ylim(0, 105)
    per_field.legend(fontsize=8)
    width = 0.8 / len(FIELD_RATES)
    for i, model in enumerate(models):
        counts = total(model.fields)
        for j, (rate, (_name, colour)) in enumerate(zip((counts.precision, counts.recall, counts.exact_match),
                                                        FIELD_RATES)):
            if rate is not None:
                place = i - 0.4 + width * (j + 0.5)
                overall.bar(place, 100 * rate, width, color=colour)
                overall.text(place, 100 * rate, number(100 * rate, lang, 0), ha="center", va="bottom", fontsize=7)
    overall.legend(handles=[Patch(color=c, label=name.render(lang)) for name, c in FIELD_RATES], fontsize=8)
    overall.set_title(_("All fields, % (higher is better)").render(lang))
    overall.set_xticks(range(len(models)), [_label(m, lang) for m in models], fontsize=8)
    overall.set_ylim(0, 110)
    for axes in (per_field, overall):
        _numbers_in(axes, lang)


def _text_panels(models: list[ModelResult], errors, speed, lang: str) -> None:
    from matplotlib.patches import Patch

    places = range(len(models))
    labels = [_label(m, lang) for m in models]
    width, highest = 0.38, 0.0
    for i, model in enumerate(models):
        score = model.score
        if score is None:
            errors.text(i, 0.5, _("no score").render(lang), ha="center", va="bottom", color="grey")
            continue
        for offset, rate, colour in ((-width / 2, score.cer, RATE_COLOURS["CER"]),
                                     (width / 2, score.wer, RATE_COLOURS["WER"])):
            errors.bar(i + offset, 100 * rate, width, color=colour)
            errors.text(i + offset, 100 * rate, number(100 * rate, lang, 1), ha="center", va="bottom", fontsize=8)
            highest = max(highest, 100 * rate)
    errors.legend(handles=[Patch(color=c, label=name) for name, c in RATE_COLOURS.items()])
    errors.set_title(_("Error rate, % (lower is better)").render(lang))
    errors.set_ylim(0, max(5.0, highest * 1.2))  # a few per cent still look small
    speed.bar(places, [m.pages_per_min or 0 for m in models], color="tab:green")
    speed.set_title(_("Pages per minute (higher is better)").render(lang))
    for axes in (errors, speed):
        axes.set_xticks(places, labels, fontsize=8)
        _numbers_in(axes, lang)
        axes.set_xlim(-0.6, len(models) - 0.4)


def write(evaluation: Evaluation, out: Path, lang: str = "en") -> list[Path]:
    """``eval.csv`` and ``eval.png`` under ``out``, and ``eval_fields.csv`` where fields were
    scored; the paths written. The CSVs' columns stay English (read by programs); the chart
    speaks ``lang``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / CSV_NAME, out / CHART_NAME]
    written[0].write_text(csv_text(evaluation), encoding="utf-8")
    written[1].write_bytes(chart_png(evaluation, lang))
    if any(m.fields is not None for m in evaluation.models):
        written.append(out / FIELDS_CSV_NAME)
        written[2].write_text(fields_csv_text(evaluation), encoding="utf-8")
    return written
