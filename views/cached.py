"""What the views keep across reruns: the config, the host probe, opened documents, and the
process's runtime."""

from __future__ import annotations

import streamlit as st

from managers.availability import probe_host
from managers.readiness import endpoint_ready
from managers.runtime import Runtime
from models.config import AppConfig, load_config
from models.document import Document, open_document
from views.i18n import t


@st.cache_resource
def cached_config() -> AppConfig:
    return load_config()


# Spinner texts are drawn per session, in its language: a cache's own show_spinner text would
# be fixed once, at import. st.spinner appears only after half a second, so a hit shows none.
def cached_host(config: AppConfig):
    with st.spinner(t("Looking for Docker and GPUs…")):
        return _cached_host(config)


@st.cache_resource(ttl=15, show_spinner=False)
def _cached_host(_config: AppConfig):
    return probe_host(_config)


@st.cache_data(ttl=10, show_spinner=False)
def cached_remote_ready(key: str, _config: AppConfig) -> tuple[bool, str]:
    return endpoint_ready(_config.models[key].vllm)


def cached_document(file_id: str, data: bytes, name: str, config: AppConfig) -> Document:
    with st.spinner(t("Opening the document…")):
        return _cached_document(file_id, data, name, config)


@st.cache_resource(max_entries=4, show_spinner=False)
def _cached_document(file_id: str, _data: bytes, name: str, _config: AppConfig) -> Document:
    return open_document(_data, name, _config.limits)


# One entry whatever the config (it is not hashed): one runtime for every session of the process.
# Released when the cache is cleared, so a runtime made after it never meets this one's model.
@st.cache_resource(on_release=Runtime.close)
def process_runtime(_config: AppConfig) -> Runtime:
    """The process's one runtime (managers/runtime.py), unloading what it holds when idle."""
    runtime = Runtime(_config)
    runtime.watch_idle()
    return runtime
