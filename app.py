"""ChatVLMLLM — the Streamlit entry point: the sidebar, then the view chosen there. Each view
lives in views/; every decision lives in managers/ and models/."""

from __future__ import annotations

import streamlit as st

from models.errors import ChatVLMError
from views.cached import cached_config, cached_host, idle_watcher
from views.compare import compare_view
from views.evaluate import evaluate_view
from views.history import history_view
from views.progress import follow
from views.read import read_view
from views.sidebar import idle_note, operations_panel, sidebar

st.set_page_config(page_title="ChatVLMLLM", page_icon="📄", layout="wide")


def main() -> None:
    try:
        config = cached_config()
    except ChatVLMError as exc:
        st.error(str(exc))
        st.stop()
    idle_watcher(config)
    host = cached_host(config)
    mode, key, reason = sidebar(config, host)
    ops_slot = operations_panel(config)
    idle_note(config)
    view = st.sidebar.radio("View", ["Read", "Compare", "Evaluate", "History"], horizontal=True, key="view")
    watched = None
    if view == "History":
        history_view(config)
    elif view == "Compare":
        watched = compare_view(config, host, (mode, key))
    elif view == "Evaluate":
        watched = evaluate_view(config, host, (mode, key))
    else:
        watched = read_view(config, mode, key, reason)
    follow(config, ops_slot, watched)


main()
