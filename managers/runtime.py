"""What a process holds while it lives: the one object the app, the CLI and the tests make and
pass down, instead of state kept in classes and modules.

The parts: the arbiter (with this process's claim on the local model), the loader holding
that model, the thread every local ``generate`` runs on, the long operations (switches,
loads, stops, unloads) with the vLLM models this process started or joined, the history,
and — in the app — the idle watcher.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from managers.arbiter import Arbiter
from managers.history import History
from managers.idle import IdleWatcher
from managers.model_loader import ModelLoader
from managers.operations import Operations
from models.config import AppConfig


class Runtime:
    """Exactly one per process in the app (views/cached.py keeps it with st.cache_resource,
    for every session) and in the CLI (the command a process runs makes it); tests make as
    many as they need. One, because:

    - the local model is this runtime's: a session, a batch or an idle unload reaches it only
      through the runtime that loaded it. A second runtime in the process sees that model
      as another process's — refused while it is held (the flock on local.lock is per open
      file, not per process), never loaded beside it — so the GPU still holds one model;
    - CUDA graphs are recorded per thread, and torch 2.11 sets up their thread-local store
      only on the thread that first used them: every local model of the process runs on
      this one thread for good, or a model loaded again could not compile;
    - operations are joined and cancelled by what this process runs, and the idle unload
      stops only what this process started or joined.
    """

    def __init__(self, config: AppConfig):
        self.config = config
        self.operations = Operations()
        self.history = History(config)
        self.gpu_thread = ThreadPoolExecutor(1, thread_name_prefix="local-gpu")  # its thread starts on first use
        self.arbiter = Arbiter(config, release_local=lambda: self.loader.unload_all_models())
        self.loader = ModelLoader(config, self.arbiter, self.gpu_thread)
        self.idle_watcher: IdleWatcher | None = None

    def watch_idle(self) -> None:
        """Unload what this process holds after ``switching.idle_unload_s`` unused (the app
        does; the CLI does not: ``cli.py stop`` is its way)."""
        if self.idle_watcher is None:
            self.idle_watcher = IdleWatcher(self)
            self.idle_watcher.start()

    def close(self) -> None:
        """Let go of what this runtime holds: the idle watcher, the local model and those kept
        in host memory, the GPU thread."""
        if self.idle_watcher is not None:
            self.idle_watcher.stopped.set()
        if self.loader.current() is not None:  # the unload imports PyTorch, which a CPU-only install lacks
            self.loader.unload_all_models(keep=False)
        self.loader.free_kept()
        self.gpu_thread.shutdown(wait=False)
