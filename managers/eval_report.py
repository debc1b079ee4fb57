"""An evaluation written down: a CSV with one row per model and document, and a chart of
error rates and speed per model (PNG), for ``cli.py eval`` and the app alike.

CER and WER are fractions in the CSV (0.02 is 2%), beside the edits and reference lengths
they come from, so rows can be added up again (micro-averaged) over any selection. They are
empty where there is no truth, and for a model that could not be made ready, whose rows
carry its sentence in ``note`` instead.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from managers.evaluation import Evaluation, Row
from models.config import MODE_LABELS
from models.i18n import _, number, translate
from models.metrics import Score

CSV_NAME, CHART_NAME = "eval.csv", "eval.png"
COLUMNS = ["model", "mode", "task", "document", "pages", "failed_pages", "seconds", "pages_per_min",
           "cer", "wer", "reference_chars", "char_edits", "reference_words", "word_edits", "note"]
RATE_COLOURS = {"CER": "tab:blue", "WER": "tab:orange"}


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


def csv_text(evaluation: Evaluation) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for model in evaluation.models:
        choice = model.choice
        first = {"model": choice.key, "mode": choice.mode, "task": choice.task}
        if model.error:
            writer.writerows({**first, "document": s.name, "note": model.error} for s in evaluation.samples)
        for row in model.rows:
            writer.writerow({**first, "document": row.sample.name, **_row(row)})
    return out.getvalue()


def chart_png(evaluation: Evaluation, lang: str = "en") -> bytes:
    """CER and WER per model side by side, and pages per minute; a model without a score
    (no truth, or not made ready) has no bars and says so. Its words and numbers are
    written in ``lang``."""
    models = evaluation.models
    places = range(len(models))
    labels = [f"{m.choice.key}\n({translate(MODE_LABELS[m.choice.mode], lang)}, {m.choice.task})" for m in models]
    figure = Figure(figsize=(max(8.0, 2.6 * len(models) + 3), 4.5), layout="constrained")
    errors, speed = figure.subplots(1, 2, width_ratios=[2, 1])
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
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: number(value, lang)))
        axes.set_xlim(-0.6, len(models) - 0.4)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write(evaluation: Evaluation, out: Path, lang: str = "en") -> list[Path]:
    """``eval.csv`` and ``eval.png`` under ``out``; the paths written. The CSV's columns stay
    English (read by programs); the chart speaks ``lang``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / CSV_NAME, out / CHART_NAME]
    written[0].write_text(csv_text(evaluation), encoding="utf-8")
    written[1].write_bytes(chart_png(evaluation, lang))
    return written
