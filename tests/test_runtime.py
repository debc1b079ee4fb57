"""One runtime per process: what a process holds lives in the Runtime made for it, so two
runtimes share nothing but the GPU — which they share as two processes do — and no module
of managers/ keeps that state in its classes or sets it in another module's at import."""

import ast
import os
from pathlib import Path

import pytest

from managers import runs
from managers.runtime import Runtime
from models.config import load_config
from models.errors import NotAvailable
from tests.conftest import ROOT
from tests.containers import local_entry, write_config

MANAGERS = sorted((ROOT / "managers").rglob("*.py"))
# What would make a module or a class the holder of a process's state when made at import.
STATEFUL = {"ThreadPoolExecutor", "Thread", "Lock", "RLock", "Event"}


def classes() -> set[str]:
    return {node.name for path in MANAGERS for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ClassDef)}


def targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return node.targets
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    return []


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def test_no_class_or_module_of_managers_holds_process_state():
    """Class attributes set from outside the instance (``Arbiter.x = …`` at import, ``cls.x = …``
    or ``Loader._current = …`` later) and objects made at import (``OPERATIONS = Operations()``)
    are state shared by everything in the process: it belongs on the runtime."""
    ours = classes()
    found = []
    for path in MANAGERS:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            for target in targets(node):
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and (target.value.id == "cls" or target.value.id in ours)):
                    found.append(f"{where(path, node)} sets {target.value.id}.{target.attr}")
        for node in tree.body:  # made at import
            value = getattr(node, "value", None)
            if isinstance(value, ast.Call):
                made = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
                if made in ours or made in STATEFUL:
                    found.append(f"{where(path, node)} makes a {made} at import")
    assert found == []


@pytest.mark.local
def test_two_runtimes_in_one_process_share_no_model_and_no_operations(tmp_path, tiny_dirs):
    config = load_config(write_config(tmp_path / "c.yaml", {
        "tiny2": local_entry("tiny2", tiny_dirs["qwen2_vl"]),
        "tiny3": local_entry("tiny3", tiny_dirs["qwen3_vl"], factor=32)}))
    first, second = Runtime(config), Runtime(config)
    try:
        loading = runs.load(first, "tiny2")
        loading.wait()
        assert first.loader.current().key == "tiny2" and first.operations.get(loading.id) is loading
        assert second.loader.current() is None and second.operations.get(loading.id) is None
        assert not runs.is_ready(second, "tiny2", "local")
        # The GPU is still one model's: the other runtime is refused as another process would be...
        with pytest.raises(NotAvailable, match=f"^Process {os.getpid()} holds the GPU with Tiny tiny2 in local mode"):
            second.loader.load_model("tiny3")
        # ...and its Unload has nothing of its own to unload.
        assert runs.unload(second).wait() is None
        assert first.loader.current().key == "tiny2"
        first.close()
        assert second.loader.load_model("tiny3").key == "tiny3"  # the first let go of the GPU
    finally:
        first.close()
        second.close()


def test_every_session_of_the_app_gets_the_one_runtime(config):
    import streamlit as st

    from views.cached import process_runtime

    st.cache_resource.clear()
    try:
        runtime = process_runtime(config)
        assert process_runtime(load_config(ROOT / "config.yaml")) is runtime
        assert runtime.idle_watcher.is_alive()
    finally:
        st.cache_resource.clear()
    assert runtime.idle_watcher.stopped.is_set()  # released with the cache
