"""The History view: runs kept from earlier (this app, other sessions, the CLI)."""

from __future__ import annotations

import streamlit as st

from managers.runtime import Runtime
from models.config import FIELDS
from models.document import open_document
from models.errors import ChatVLMError
from models.i18n import datetime_text
from views.fields import show_fields
from views.i18n import language, mode_name, said, t
from views.result import show_result


def history_view(runtime: Runtime) -> None:
    """Runs kept from earlier (this app, other sessions, the CLI), newest first: reopen one
    with every tab and download as if just read, or delete it."""
    st.title(t("History"))
    history = runtime.history
    search = st.text_input(t("Search by file name"), key="history_search")
    try:
        entries = history.list(search or None)
    except ChatVLMError as exc:
        st.error(said(exc))
        return
    if history.warning:
        st.warning(said(history.warning))
    if not entries:
        st.info(t("No runs kept yet.") if not search else t("No run of a file with that name."))
        return
    lang = language()
    labels = {e.id: t("{when} · {name} · {pages} p. · {model} ({mode}, {task}) · {seconds:.1f} s",
                      when=datetime_text(e.created, lang), name=e.name, pages=e.pages, model=e.model,
                      mode=mode_name(e.mode), task=e.task, seconds=e.seconds) for e in entries}
    chosen = st.selectbox(t("Run"), list(labels), format_func=labels.get, key="history_run")
    # Another session may delete or damage the run, or the database may fail, between the
    # listing above and these: each is one sentence on the page, and the list stays usable.
    if st.button(t("Delete this run"), key="history_delete"):
        try:
            history.delete(chosen)
        except ChatVLMError as exc:
            st.error(said(exc))
            return
        st.rerun()
    try:
        stored = history.get(chosen)
        if stored.document is not None:
            document = open_document(stored.document, stored.entry.name, runtime.config.limits)
    except ChatVLMError as exc:
        st.error(said(exc))
        return
    if stored.document is None:
        st.warning(t("'{name}' was over history.max_document_mb, so only its text was kept.",
                     name=stored.entry.name))
        if stored.result.task == FIELDS:
            show_fields(runtime, stored.run, f"history-{chosen}", stored.entry.name, None, 0)
        for page in stored.result.pages:
            st.code(page.text or t("(no text)"), language=None, wrap_lines=True)
        return
    show_result(runtime, stored.run, f"history-{chosen}", document)
