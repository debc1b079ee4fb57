"""Keeping progress on screen while work runs in threads of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import streamlit as st

from managers.operations import OPERATIONS
from models.config import AppConfig
from views.sidebar import draw_operations


class Job(Protocol):
    @property
    def running(self) -> bool: ...


@dataclass(frozen=True)
class Watched:
    """A view's work in the background, the slot its progress goes in, and how to draw it."""

    job: Job
    slot: Any
    draw: Callable[[Any, Job], None]


def follow(config: AppConfig, ops_slot, watched: Watched | None = None) -> None:
    """Keep the progress of running operations and of the view's job up to date until they
    end, then show the outcome. A rerun (any click) leaves them running and the next run
    follows them again."""
    followed = st.session_state.pop("redraw", False)
    while True:
        job_running = watched is not None and watched.job.running
        if not OPERATIONS.running() and not job_running:
            break
        followed = True
        draw_operations(ops_slot, config)
        if job_running:
            watched.draw(watched.slot, watched.job)
        time.sleep(0.25)
    if followed:
        st.rerun()
