"""The Evaluate view: the app's ``cli.py eval``. Documents with their true texts (NAME.txt
beside NAME.pdf, pages split by form feeds) read by every chosen model, one model after
another; CER, WER and speed per model and per document, the chart, and the CSV."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from managers import eval_report
from managers.evaluation import Evaluation, ModelResult, Row, Sample, sample
from managers.runtime import Runtime
from models.config import AppConfig, Mode
from models.document import UPLOAD_TYPES
from models.errors import ChatVLMError
from models.metrics import split_pages
from views.cached import cached_document
from views.choice import label, runnable, short_label
from views.i18n import language, num, percent, shown_as, t, said, tn, tr
from views.progress import Watched, collect_evaluation, run_evaluation

def evaluate_view(runtime: Runtime, host, default: tuple[Mode, str]) -> Watched | None:
    config = runtime.config
    st.title(t("Evaluate models on your documents"))
    collect_evaluation("eval")
    choices = runnable(config, host)
    preferred = [name for name, c in choices.items()
                 if (c.mode, c.key) in (default, ("cpu", config.fallback_model))]
    chosen = st.multiselect(t("Models"), list(choices), default=preferred, key="eval_models",
                            format_func=shown_as(choices, lambda name: short_label(config, choices[name])))
    uploads = st.file_uploader(t("Documents, each with its true text as NAME.txt (pages split by form feeds)"),
                               type=[*UPLOAD_TYPES, "txt"], accept_multiple_files=True, key="eval_uploads",
                               max_upload_size=config.limits.max_upload_mb)
    samples = read_samples(config, uploads or [])
    done, watched = run_evaluation(runtime, "eval", t("Evaluate"), not samples or not chosen,
                                   lambda: ([choices[name] for name in chosen], samples))
    if done is not None:
        show_evaluation(config, done)
    return watched


def read_samples(config: AppConfig, uploads) -> list[Sample]:
    """The uploaded documents, each with the .txt of its name as its truth; a sentence for
    each file that cannot be used."""
    truths: dict[str, list[str]] = {}
    for upload in uploads:
        if Path(upload.name).suffix.lower() == ".txt":
            try:
                truths[Path(upload.name).stem] = split_pages(upload.getvalue().decode("utf-8-sig"))
            except UnicodeDecodeError:
                st.error(t("'{name}' is not UTF-8 text; save it as UTF-8 and upload it again.", name=upload.name))
    samples = []
    for upload in uploads:
        if Path(upload.name).suffix.lower() == ".txt":
            continue
        try:
            document = cached_document(upload.file_id, upload.getvalue(), upload.name, config)
            samples.append(sample(document, truths.get(Path(upload.name).stem), config.limits))
        except ChatVLMError as exc:
            st.error(said(exc))
    if samples:
        untrue = [s.name for s in samples if s.truth is None]
        scored = len(samples) - len(untrue)
        st.caption(tn("{n} document, {scored} with true text; without (read and timed, not scored): {names}.",
                      "{n} documents, {scored} with true text; without (read and timed, not scored): {names}.",
                      len(samples), scored=scored, names=", ".join(untrue)) if untrue
                   else tn("{n} document, {scored} with true text.", "{n} documents, {scored} with true text.",
                           len(samples), scored=scored))
    return samples






def show_evaluation(config: AppConfig, evaluation: Evaluation) -> None:
    if evaluation.cancelled:
        st.warning(t("The evaluation was cancelled; documents read in full are counted."))
    for model in evaluation.models:
        if model.error:
            st.error(said(f"{label(config, model.choice)}: {tr(model.error)}"))
    st.subheader(t("All documents"))
    st.dataframe([line(label(config, model.choice), model) for model in evaluation.models if not model.error],
                 hide_index=True)
    chart = eval_report.chart_png(evaluation, lang=language())
    st.image(chart, width="stretch")
    st.subheader(t("Per document"))
    st.dataframe([line(label(config, model.choice), row) | {t("document"): row.sample.name, t("note"): tr(row.note)}
                  for model in evaluation.models for row in model.rows], hide_index=True)
    left, right = st.columns(2)
    left.download_button(t("Table .csv"), eval_report.csv_text(evaluation), file_name=eval_report.CSV_NAME,
                         mime="text/csv", key="eval_csv")
    right.download_button(t("Chart .png"), chart, file_name=eval_report.CHART_NAME,
                          mime="image/png", key="eval_png")


def line(name: str, part: ModelResult | Row) -> dict:
    """A table row, numbers written as the session's language writes them: CER and WER
    micro-averaged over the pages with true text; '-' without any."""
    score, per_min = part.score, part.pages_per_min
    return {t("model"): name, t("pages"): part.pages, t("failed"): part.failed, t("seconds"): num(part.seconds, 1),
            t("pages/min"): num(per_min, 1) if per_min else None,
            t("CER"): percent(None if score is None else score.cer),
            t("WER"): percent(None if score is None else score.wer)}
