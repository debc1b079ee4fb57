"""The History view: runs kept from earlier (this app, other sessions, the CLI)."""

from __future__ import annotations

import streamlit as st

from managers.history import History
from models.config import AppConfig
from models.document import open_document
from models.errors import ChatVLMError
from views.result import show_result


def history_view(config: AppConfig) -> None:
    """Runs kept from earlier (this app, other sessions, the CLI), newest first: reopen one
    with every tab and download as if just read, or delete it."""
    st.title("History")
    history = History(config)
    search = st.text_input("Search by file name", key="history_search")
    try:
        entries = history.list(search or None)
    except ChatVLMError as exc:
        st.error(str(exc))
        return
    if history.warning:
        st.warning(history.warning)
    if not entries:
        st.info("No runs kept yet." if not search else "No run of a file with that name.")
        return
    labels = {e.id: f"{e.created:%Y-%m-%d %H:%M} · {e.name} · {e.pages} p. · {e.model} ({e.mode}, {e.task}) · "
                    f"{e.seconds:.1f} s" for e in entries}
    chosen = st.selectbox("Run", list(labels), format_func=labels.get, key="history_run")
    if st.button("Delete this run", key="history_delete"):
        history.delete(chosen)
        st.rerun()
    try:
        stored = history.get(chosen)
    except ChatVLMError as exc:
        st.error(str(exc))
        return
    if stored.document is None:
        st.warning(f"'{stored.entry.name}' was over history.max_document_mb, so only its text was kept.")
        for page in stored.result.pages:
            st.code(page.text or "(no text)", language=None, wrap_lines=True)
        return
    document = open_document(stored.document, stored.entry.name, config.limits)
    show_result(config, stored.run, f"history-{chosen}", document)
