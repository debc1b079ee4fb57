"""The Compare view: one document read by two choices of (model, mode, task), one after the
other with one model on the GPU at a time, shown side by side with a word diff, both layouts
and the time per page; with the true text given, CER and WER for each side."""

from __future__ import annotations

from html import escape

import streamlit as st

from managers.comparison import align_truth
from managers.evaluation import Evaluation, Row, Sample
from managers.runtime import Runtime
from models import exports, render
from models.config import AppConfig, Mode
from models.document import UPLOAD_TYPES, Document
from models.errors import ChatVLMError
from models.metrics import score, split_pages, word_diff
from views import diff
from views.cached import cached_document
from views.choice import label, pick, runnable
from views.evaluate import line
from views.i18n import language, num, percent, shown_as, t, said, tn, tr
from views.progress import Watched, collect_evaluation, run_evaluation
from views.read import choose_pages
from views.result import page_image

AGAINST = ("reading", "truth")  # what a side's words are diffed against


def against_name(against: str) -> str:
    return t("the true text") if against == "truth" else t("the other reading")


def compare_view(runtime: Runtime, host, default: tuple[Mode, str]) -> Watched | None:
    config = runtime.config
    st.title(t("Compare two models"))
    collect_evaluation("cmp")
    st.caption(t("The first reads, then the second: one model holds the GPU at a time."))
    fallback = ("cpu", config.fallback_model)
    if default == fallback:  # the other side has it: start from something else that runs here
        default = next(((c.mode, c.key) for c in runnable(config, host).values() if (c.mode, c.key) != fallback),
                       default)
    sides = []
    for n, side_default in enumerate((default, fallback)):
        st.markdown(t("**First**") if n == 0 else t("**Second**"))
        sides.append(pick(config, host, f"cmp{n}", side_default))
    upload = st.file_uploader(t("Document image or PDF"), type=UPLOAD_TYPES, key="cmp_upload",
                              max_upload_size=config.limits.max_upload_mb)
    document = indexes = None
    if upload is not None:
        try:
            document = cached_document(upload.file_id, upload.getvalue(), upload.name, config)
            indexes = choose_pages(document, config, key="cmp_pages")
        except ChatVLMError as exc:
            st.error(said(exc))
    truth, note = true_text(document, indexes)
    if note:
        st.info(said(note))
    same = sides[0][0] == sides[1][0]
    if same:
        st.info(t("Choose two different models, modes or tasks to compare."))
    blocked = same or any(reason for _, reason in sides) or indexes is None
    done, watched = run_evaluation(runtime, "cmp", t("Compare"), blocked,
                                   lambda: ([choice for choice, _ in sides], [Sample(document, truth, indexes)]))
    if done is not None:
        show_comparison(config, done)
    return watched


def true_text(document: Document | None, indexes: list[int] | None) -> tuple[list[str | None] | None, str | None]:
    """The true text a person gave (pasted, or a .txt with pages split by form feeds), page by
    page of the document; and a sentence on how it was matched, or on why it cannot be used."""
    with st.expander(t("True text (optional): then each side shows CER and WER")):
        pasted = st.text_area(t("Paste the true text; separate pages with a form feed (\\f)"), key="cmp_truth")
        file = st.file_uploader(t("…or a UTF-8 .txt, pages split by form feeds"), type=["txt"],
                                key="cmp_truth_file")
    text = pasted
    if file is not None:
        try:
            text = file.getvalue().decode("utf-8-sig")
        except UnicodeDecodeError:
            return None, t("'{name}' is not UTF-8 text; save it as UTF-8 and upload it again.", name=file.name)
    if not text.strip() or document is None or indexes is None:
        return None, None
    return align_truth(split_pages(text), document.page_count, indexes)






def show_comparison(config: AppConfig, evaluation: Evaluation) -> None:
    if evaluation.cancelled:
        st.warning(t("The comparison was cancelled; what was read in full is shown."))
    sample = evaluation.samples[0]
    models = [m for m in evaluation.models if m.error or m.rows]
    for model in models:
        if model.error:
            st.error(said(f"{label(config, model.choice)}: {tr(model.error)}"))
    rows = [(model, model.rows[0]) for model in models if model.rows]
    if not rows:
        return
    st.dataframe([line(label(config, model.choice), row)
                  | {t("s per page"): num(row.seconds / row.pages, 2) if row.pages else None}
                  for model, row in rows], hide_index=True)
    indexes = [page.index for page in rows[0][1].run.result.pages]
    index = (st.selectbox(t("Page"), indexes, key="cmp_page",
                          format_func=shown_as(indexes, lambda i: t("Page {page}", page=i + 1)))
             if len(indexes) > 1 else indexes[0])
    truth = sample.truth[index] if sample.truth and index < len(sample.truth) else None
    against = "reading"
    if truth is not None and len(rows) == 2:
        against = st.radio(t("Differences against"), AGAINST, format_func=shown_as(AGAINST, against_name),
                           horizontal=True, key="cmp_against")
    elif truth is not None:
        against = "truth"
    pages = [{p.index: p for p in row.run.result.pages}[index] for _, row in rows]
    texts = ["" if page.error else page.text for page in pages]
    pairwise = word_diff(*texts) if len(texts) == 2 else []
    for n, column in enumerate(st.columns(len(rows))):
        (model, row), page = rows[n], pages[n]
        with column:
            st.markdown(f"**{label(config, model.choice)}**")
            if page.error:
                st.caption(t("Page {page} was not read", page=page.number))
            elif truth is not None:
                page_score = score(truth, texts[n])
                st.caption(t("Page {page} read in {seconds:.2f} s · CER {cer} · WER {wer}", page=page.number,
                             seconds=page.seconds, cer=percent(page_score.cer, 1), wer=percent(page_score.wer, 1)))
            else:
                st.caption(t("Page {page} read in {seconds:.2f} s", page=page.number, seconds=page.seconds))
            if page.error:
                st.error(said(page.error))
            if against == "truth":
                html = diff.against_truth(word_diff(truth, texts[n]))
            elif pairwise:
                html = diff.between_readings(pairwise, "left" if n == 0 else "right")
            else:  # the other side read nothing to compare with
                html = escape(texts[n])
            st.markdown(diff.block(html, t("(no text)")), unsafe_allow_html=True)
            if not page.error:
                st.image(render.overlay(page_image(row.run, sample.document, index), page),
                         caption=tn("{n} box", "{n} boxes", len(page.blocks)), width="stretch")
            download(row, sample.document, f"cmp_dl_{n}")
    st.caption(t("Marked: green — only this side has it (or extra against the true text); red — only "
                 "the first has it; amber — a different word (hover for the other); struck through — "
                 "a true word the reading left out."))
    kept = sum(row.error is None for _, row in rows)
    st.caption(tn("{n} run is kept in the History.", "{n} runs are kept in the History.", kept))




def download(row: Row, document: Document, key: str) -> None:
    left, right = st.columns([1, 2])
    fmt = left.selectbox(t("Format"), exports.ALL_FORMATS, key=f"{key}_fmt", label_visibility="collapsed")
    try:
        made = exports.file_for(row.run.result, fmt, document.name,
                                lambda i: page_image(row.run, document, i), language())
    except ChatVLMError as exc:
        right.caption(said(exc))
        return
    right.download_button(t("Download .{format}", format=fmt), made.data, file_name=made.name,
                          mime=made.mime, key=key)
