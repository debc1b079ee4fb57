"""Picking what to read with outside the sidebar: a (mode, model, task) for each side of a
comparison, or several for an evaluation. Only models that can run here can be run."""

from __future__ import annotations

import streamlit as st

from managers.availability import models_for_mode, why_not
from managers.runs import Choice
from models.config import MODES, AppConfig, Mode
from views.i18n import local, mode_name, said, shown_as, t, tr


def pick(config: AppConfig, host, key: str, default: tuple[Mode, str]) -> tuple[Choice, str | None]:
    """One choice in a row of three pickers; the reason it cannot run here, or None."""
    mode_col, model_col, task_col = st.columns(3)
    mode = mode_col.selectbox(t("Mode"), MODES, index=MODES.index(default[0]),
                              format_func=shown_as(MODES, mode_name), key=f"{key}_mode")
    keys = models_for_mode(config, mode)
    preferred = default[1] if default[1] in keys else keys[0]
    name = model_col.selectbox(t("Model"), keys, index=keys.index(preferred),
                               format_func=shown_as(keys, lambda k: local(config.models[k].name)),
                               key=f"{key}_model_{mode}")
    model = config.models[name]
    task = task_col.selectbox(t("Task"), list(model.tasks),
                              format_func=shown_as(model.tasks, lambda k: local(model.tasks[k].label)),
                              key=f"{key}_task_{name}")
    reason = why_not(model, mode, host, config)
    if reason:
        st.warning(said(t("Cannot run here: {reason}.", reason=tr(reason))))
    return Choice(name, mode, task), reason


def runnable(config: AppConfig, host) -> dict[str, Choice]:
    """Every (model, mode) that can run on this machine, with its first task, by ``KEY:MODE``
    (as ``cli.py eval --models`` names them: the same in every language; ``short_label``
    shows one)."""
    return {f"{key}:{mode}": Choice(key, mode, next(iter(m.tasks)))
            for key, m in config.models.items() for mode in m.modes
            if why_not(m, mode, host, config) is None}


def short_label(config: AppConfig, choice: Choice) -> str:
    """A model and its mode as people name them: "Tesseract 5 (CPU)"."""
    return f"{local(config.models[choice.key].name)} ({mode_name(choice.mode)})"


def label(config: AppConfig, choice: Choice) -> str:
    """A choice as people name it: the model's name, the mode and the task's label."""
    model = config.models[choice.key]
    return f"{local(model.name)} · {mode_name(choice.mode)} · {local(model.tasks[choice.task].label)}"
