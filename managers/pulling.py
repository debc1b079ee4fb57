"""An image pull that a cancel ends at once: the pull runs in a child process, killed on cancel.

The Docker engine has no call that stops a pull; it drops one only when writing progress to its
client fails. A pull that stalls (a registry that stops answering) writes nothing, not even the
response's headers, so docker-py's call waits in a read no other thread can interrupt, on a
connection no other thread can reach. A child process can be killed: the app stops waiting at
once, and the engine drops the pull at its next progress write, its client being gone.

The child reaches the engine as ``managers.docker_host.connect`` does (the environment's
DOCKER_HOST) and writes the engine's progress events to its stdout as JSON lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

from models.config import ROOT
from models.i18n import _

REFUSED = "refused"  # the key of the child's last line when the engine refused the pull


def pull(repo: str, tag: str, cancel: threading.Event, poll_s: float) -> Iterator[dict]:
    """The engine's progress events; an event with ``REFUSED`` holds the engine's reason for
    refusing the pull. Once ``cancel`` is set the events end, the child killed."""
    # stderr to a file, not a pipe: a child that said much there would block on a full pipe
    said = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen([sys.executable, "-m", "managers.pulling", repo, tag], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=said, text=True)
    finished = threading.Event()

    def kill_on_cancel() -> None:
        while not finished.is_set():
            if cancel.wait(poll_s):
                child.kill()
                return

    watcher = threading.Thread(target=kill_on_cancel, name="pull-cancel", daemon=True)
    watcher.start()
    try:
        for line in child.stdout:
            try:
                yield json.loads(line)
            except ValueError:  # not an event (a library's own print): nothing to show
                continue
        if child.wait() != 0 and not cancel.is_set():  # it could not reach the engine at all
            said.seek(0)
            last = said.read().strip().splitlines()
            yield {REFUSED: last[-1] if last else _("exited with code {code}", code=str(child.returncode))}
    finally:
        finished.set()
        watcher.join()
        child.kill()
        child.communicate()
        said.close()


def main(repo: str, tag: str) -> int:
    import docker
    import docker.errors

    try:
        for event in docker.from_env().api.pull(repo, tag=tag, stream=True, decode=True):
            print(json.dumps(event), flush=True)
    except docker.errors.APIError as exc:
        print(json.dumps({REFUSED: str(exc.explanation or exc)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
