"""ChatVLMLLM — the Streamlit entry point: the language, the sidebar, then the view chosen
there. Each view lives in views/; every decision lives in managers/ and models/."""

from __future__ import annotations

import streamlit as st

from models.errors import ChatVLMError
from views.cached import cached_config, cached_host, process_runtime
from views.compare import compare_view
from views.evaluate import evaluate_view
from views.history import history_view
from models.i18n import N_
from views.i18n import said, shown_as, t
from views.progress import follow
from views.read import read_view
from views.sidebar import idle_note, language_picker, operations_panel, sidebar

# Each view by its value, which stays the same in every language, and its name, translated when drawn.
VIEWS = {"read": N_("Read"), "compare": N_("Compare"), "evaluate": N_("Evaluate"), "history": N_("History")}


def main() -> None:
    try:
        config = cached_config()
    except ChatVLMError as exc:
        language_picker(None)  # the error is read in the language chosen: the browser's until then
        st.set_page_config(page_title=t("ChatVLMLLM"), page_icon="📄", layout="wide")
        st.error(said(exc))
        st.stop()
    language_picker(config)  # first: everything below is drawn in it
    st.set_page_config(page_title=t("ChatVLMLLM"), page_icon="📄", layout="wide")
    runtime = process_runtime(config)
    host = cached_host(config)
    mode, key, reason = sidebar(runtime, host)
    ops_slot = operations_panel(runtime)
    idle_note(runtime)
    view = st.sidebar.radio(t("View"), list(VIEWS), format_func=shown_as(VIEWS, lambda v: t(VIEWS[v])),
                            horizontal=True, key="view")
    watched = None
    if view == "history":
        history_view(runtime)
    elif view == "compare":
        watched = compare_view(runtime, host, (mode, key))
    elif view == "evaluate":
        watched = evaluate_view(runtime, host, (mode, key))
    else:
        watched = read_view(runtime, mode, key, reason)
    follow(runtime, ops_slot, watched)


main()
