"""The run history on real SQLite files, real threads and a second process, and through cli.py."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from managers import history as history_module
from managers.history import MIGRATIONS, History
from managers.runs import Choice, Run
from models.errors import HistoryError
from models.result import Block, OCRResult, PageResult
from tests.conftest import ROOT
from tests.containers import cli
from tests.helpers import ENGLISH, encode, render_lines


def make_run(text: str = "Invoice 4711", noise: int = 0) -> Run:
    """A two-page run whose second page preparation turned; ``noise``: that page's side in
    random pixels, so its PNG is about 3·noise² bytes."""
    pages = [PageResult(index=i, width=1654, height=2339, seconds=0.5, text=f"{text} p{i + 1}",
                        markdown=f"# {text}", blocks=[Block(bbox=(120, 150, 980, 197), text=text)])
             for i in range(2)]
    result = OCRResult(model="tesseract", engine="tesseract", task="text", seconds=1.25, pages=pages)
    turned = (Image.frombytes("RGB", (noise, noise), os.urandom(3 * noise * noise)) if noise
              else render_lines([text], size=(400, 300), top=20))
    return Run(Choice("tesseract", "cpu", "text", True, (1, 2, 30, 40)), result, {1: turned})


def with_history(config, **settings):
    return config.model_copy(update={"history": config.history.model_copy(update=settings)})


def runs_table(path: Path, column: str = "name") -> list:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"SELECT {column} FROM runs ORDER BY id")]
    finally:
        conn.close()


def test_round_trip_in_the_data_dir(config):
    history = History(config)
    assert history.path.parent == Path(os.environ["CHATVLMLLM_DATA_DIR"])
    run, data = make_run(), encode(render_lines(ENGLISH), "PNG")
    first = history.add(run, "scan.png", data)
    second = history.add(make_run("Other"), "other.png", b"other bytes")

    assert [e.id for e in history.list()] == [second, first]  # newest first
    stored = history.get(first)
    assert stored.result.model_dump_json() == run.result.model_dump_json()
    assert stored.choice == run.choice and stored.run.choice == run.choice
    assert stored.images.keys() == {1} and stored.images[1].tobytes() == run.images[1].tobytes()
    assert stored.document == data
    entry = stored.entry
    assert (entry.name, entry.pages, entry.model, entry.mode, entry.task, entry.seconds, entry.size,
            entry.has_document) == ("scan.png", 2, "tesseract", "cpu", "text", 1.25, len(data), True)
    page = stored.page_image(config.limits)
    assert page(1).tobytes() == run.images[1].tobytes()  # the prepared page, not the file's
    assert page(0).size == render_lines(ENGLISH).size

    assert history.delete(first) and not history.delete(first)
    assert [e.id for e in history.list()] == [second]
    with pytest.raises(HistoryError, match=f"no run {first}"):
        history.get(first)
    assert History(config).get(second).result.pages[0].text == "Other p1"  # another instance, same file


def test_search_by_part_of_the_file_name_in_any_case(config):
    history = History(config)
    for name in ("Техническое задание.pdf", "price list.xlsx.png", "ТЕХНИЧЕСКОЕ-2.png"):
        history.add(make_run(), name, name.encode())
    assert [e.name for e in history.list("техническое")] == ["ТЕХНИЧЕСКОЕ-2.png", "Техническое задание.pdf"]
    assert [e.name for e in history.list("PRICE")] == ["price list.xlsx.png"]
    assert history.list("nothing like it") == []
    assert len(history.list()) == 3 and len(history.list(limit=2)) == 2


def test_a_document_over_the_cap_is_kept_without_its_bytes(config):
    history = History(with_history(config, max_document_mb=0.001))  # about 1 KB
    small, big = history.add(make_run(), "small.png", b"x" * 100), history.add(make_run(), "big.png", b"y" * 5000)
    entries = {e.name: e for e in history.list()}
    assert entries["small.png"].has_document and not entries["big.png"].has_document
    assert entries["big.png"].size == 5000
    stored = history.get(big)
    assert stored.document is None and stored.result == make_run().result
    page = stored.page_image(config.limits)
    assert page(1).size == (400, 300)  # a prepared page is kept whatever the document's size
    with pytest.raises(HistoryError, match="max_document_mb"):
        page(0)
    assert history.get(small).document == b"x" * 100


def test_a_document_read_twice_is_kept_once(config):
    history = History(config)
    first, second = (history.add(make_run(), "same.png", b"same bytes") for _ in range(2))
    assert runs_table(history.path, "sha256")[0] == runs_table(history.path, "sha256")[1]
    history.delete(first)
    assert history.get(second).document == b"same bytes"  # still another run's
    history.delete(second)
    conn = sqlite3.connect(history.path)
    assert conn.execute("SELECT count(*) FROM documents").fetchone() == (0,)
    conn.close()


def test_the_total_cap_removes_the_oldest_runs_first(config):
    history = History(with_history(config, max_total_mb=0.5))
    ids = [history.add(make_run(f"run {n}", noise=200), f"run{n}.png", os.urandom(1000)) for n in range(8)]
    kept = [e.id for e in history.list()]
    assert 1 <= len(kept) < 8
    assert kept == ids[::-1][:len(kept)]  # the newest, in order, none skipped
    conn = sqlite3.connect(history.path)
    total = conn.execute("SELECT (SELECT sum(size) FROM runs) + (SELECT sum(size) FROM documents)").fetchone()[0]
    conn.close()
    assert total <= 0.5 * 2**20


def test_an_empty_version_0_database_gets_the_schema(config):
    path = Path(os.environ["CHATVLMLLM_DATA_DIR"]) / "history.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(path).close()  # an empty file: user_version 0
    history = History(config)
    history.add(make_run(), "a.png", b"a")
    assert [e.name for e in history.list()] == ["a.png"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    conn.close()


def test_an_older_database_is_upgraded_and_keeps_its_runs(config, monkeypatch):
    history = History(config)
    kept = history.add(make_run(), "before.png", b"before")
    step = ("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'upgraded'",)
    monkeypatch.setattr(history_module, "MIGRATIONS", [*MIGRATIONS, step])
    assert [e.id for e in History(config).list()] == [kept]
    conn = sqlite3.connect(history.path)
    assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 1,)
    assert conn.execute("SELECT name, note FROM runs").fetchall() == [("before.png", "upgraded")]
    conn.close()
    assert History(config).get(kept).document == b"before"


WRITER = """
import sys
sys.path.insert(0, {root!r})
from managers.history import History
from models.config import load_config
from tests.test_history import make_run
history = History(load_config())
print("ready", flush=True)
sys.stdin.readline()
for n in range({count}):
    history.add(make_run(f"process {{n}}"), f"process-{{n}}.png", f"process {{n}}".encode())
"""


def test_threads_and_another_process_writing_at_once_lose_nothing(config):
    count = 6
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), count=count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "ready\n"
    history, start, failures = History(config), threading.Barrier(8), []

    def add(t: int) -> None:
        start.wait()
        for n in range(count):
            try:
                history.add(make_run(f"thread {t} {n}"), f"thread-{t}-{n}.png", f"thread {t} {n}".encode())
            except Exception as exc:  # noqa: BLE001 — every failure is the finding
                failures.append(exc)

    threads = [threading.Thread(target=add, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    writer.stdin.write("go\n")
    writer.stdin.close()
    for thread in threads:
        thread.join()
    assert writer.wait(timeout=120) == 0
    assert failures == []
    names = {e.name for e in history.list(limit=1000)}
    assert names == ({f"thread-{t}-{n}.png" for t in range(8) for n in range(count)}
                     | {f"process-{n}.png" for n in range(count)})


def moved_aside(history: History) -> Path:
    aside = list(history.path.parent.glob("history.sqlite3.damaged-*"))
    assert len(aside) == 1
    assert history.warning == (f"The history database was damaged; it was moved to {aside[0]} "
                               "and a new one started.")
    return aside[0]


def test_a_garbage_file_is_moved_aside_and_a_new_history_started(config):
    history = History(config)
    history.path.write_bytes(b"this is not a database " * 100)
    assert history.list() == []
    assert moved_aside(history).read_bytes() == b"this is not a database " * 100
    new = history.add(make_run(), "after.png", b"after")
    assert [e.id for e in history.list()] == [new]


def test_a_truncated_file_is_moved_aside_and_a_new_history_started(config):
    History(config).add(make_run(noise=300), "before.png", os.urandom(200_000))
    path = Path(os.environ["CHATVLMLLM_DATA_DIR"]) / "history.sqlite3"
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size // 2)
    history = History(config)
    assert history.list() == []
    assert moved_aside(history).stat().st_size == size // 2
    history.add(make_run(), "after.png", b"after")
    assert [e.name for e in History(config).list()] == ["after.png"]


@pytest.fixture
def scan(tmp_path):
    path = tmp_path / "english.png"
    path.write_bytes(encode(render_lines(ENGLISH), "PNG"))
    return path


def test_cli_ocr_keeps_the_run_and_history_exports_it_again(scan, tmp_path):
    read = cli("ocr", scan, "--model", "tesseract", "--format", "json")
    assert read.returncode == 0, read.stderr
    listed = cli("history")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "WHEN", "FILE", "PAGES", "MODEL", "MODE", "TASK", "SECONDS"]
    run_id, _day, _time, name, pages, model, mode, task, seconds = row.split()
    assert (name, pages, model, mode, task) == ("english.png", "1", "tesseract", "CPU", "text")
    assert float(seconds) == pytest.approx(json.loads(read.stdout)["seconds"], abs=0.05)

    again = cli("history", "--export", run_id, "--format", "json")
    assert again.returncode == 0, again.stderr
    assert again.stdout == read.stdout
    pdf = cli("history", "--export", run_id, "--format", "pdf", "--out", tmp_path / "out")
    assert pdf.returncode == 0, pdf.stderr
    assert (tmp_path / "out" / "english.pdf").read_bytes().startswith(b"%PDF-")
    assert cli("history", "--search", "nothing").stdout == ""

    assert cli("history", "--delete", run_id).returncode == 0
    gone = cli("history", "--export", run_id, "--format", "json")
    assert gone.returncode != 0 and gone.stderr.strip() == f"error: There is no run {run_id} in the history; " \
        "it was deleted, or removed to stay under history.max_total_mb."


def test_cli_says_a_damaged_history_in_one_sentence_and_goes_on(scan):
    path = Path(os.environ["CHATVLMLLM_DATA_DIR"]) / "history.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0garbage" * 512)
    read = cli("ocr", scan, "--model", "tesseract")
    assert read.returncode == 0, read.stderr
    aside = list(path.parent.glob("history.sqlite3.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"\0garbage" * 512
    assert read.stderr.strip().splitlines()[-1] == (f"The history database was damaged; it was moved to "
                                                    f"{aside[0]} and a new one started.")
    assert "english.png" in cli("history").stdout
