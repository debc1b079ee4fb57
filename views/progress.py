"""Keeping progress on screen while work runs in threads of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import streamlit as st

from managers.comparison import EvaluationJob
from managers.evaluation import Evaluation, Sample
from managers.runs import Choice
from managers.runtime import Runtime
from views.i18n import said, t
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


def follow(runtime: Runtime, ops_slot, watched: Watched | None = None) -> None:
    """Keep the progress of running operations and of the view's job up to date until they
    end, then show the outcome. A rerun (any click) leaves them running and the next run
    follows them again."""
    followed = st.session_state.pop("redraw", False)
    while True:
        job_running = watched is not None and watched.job.running
        if not runtime.operations.running() and not job_running:
            break
        followed = True
        draw_operations(ops_slot, runtime)
        if job_running:
            watched.draw(watched.slot, watched.job)
        time.sleep(0.25)
    if followed:
        st.rerun()


def draw_evaluation(slot, job: EvaluationJob) -> None:
    """A comparison's or an evaluation's progress: the switch under way, then the page."""
    with slot.container():
        if job.status:
            st.info(said(job.status))
        if job.model:
            st.progress(job.done / job.total if job.total else 0.0,
                        text=said(t("Model {step} of {models}: {model} · {document} · page {done} of {total}",
                                    step=job.step, models=len(job.choices), model=job.model, document=job.document,
                                    done=job.done, total=job.total)))


def collect_evaluation(name: str) -> None:
    """A finished comparison or evaluation (kept under ``name`` in the session) becomes the
    one on view; its sentence if it could not start."""
    job: EvaluationJob | None = st.session_state.get(f"{name}_job")
    if job is None or job.running:
        return
    del st.session_state[f"{name}_job"]
    if job.error:
        st.error(said(job.error))
    elif job.evaluation is not None:
        st.session_state[f"{name}_done"] = job.evaluation
    if job.history_warning:
        st.warning(said(job.history_warning))


def run_evaluation(runtime: Runtime, name: str, button: str, blocked: bool,
                   work: Callable[[], tuple[list[Choice], list[Sample]]]) -> tuple[Evaluation | None, Watched | None]:
    """The button that starts a comparison or evaluation (``work`` says what reads what),
    its Cancel while it runs; the last finished one, and the running one to follow."""
    job: EvaluationJob | None = st.session_state.get(f"{name}_job")
    if st.button(button, type="primary", disabled=blocked or job is not None, key=f"{name}_run"):
        st.session_state[f"{name}_job"] = job = EvaluationJob(runtime, *work())
        st.session_state.pop(f"{name}_done", None)
    watched = None
    if job is not None and job.running:
        if st.button(t("Cancel"), key=f"{name}_cancel"):
            job.cancel.set()
        watched = Watched(job, st.empty(), draw_evaluation)
    return st.session_state.get(f"{name}_done"), watched
