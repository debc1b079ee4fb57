"""The run history on real SQLite files, real threads and a second process, and through cli.py."""

import contextlib
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import types
from pathlib import Path
from unittest import mock

import pytest
from PIL import Image

from managers import history as history_module
from managers.history import MIGRATIONS, History
from managers.runs import Choice, Run
from models.config import load_config
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


def in_a_thread(work):
    """``work``'s result, from a thread that ends, and its connection with it: as if another
    process had written the file, so this one holds nothing open when the test damages it."""
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


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
    # Written by an older version, i.e. on a connection other than this thread's: the schema
    # is brought up to date when a connection opens.
    kept = in_a_thread(lambda: history.add(make_run(), "before.png", b"before"))
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
    history, start, failures, kept = History(config), threading.Barrier(8), [], {}

    def add(t: int) -> None:
        start.wait()
        for n in range(count):
            name = f"thread-{t}-{n}.png"
            try:
                kept[history.add(make_run(f"thread {t} {n}"), name, f"thread {t} {n}".encode())] = name
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
    entries = {e.id: e.name for e in history.list(limit=1000)}
    assert {run_id: entries.get(run_id) for run_id in kept} == kept and len(kept) == 8 * count
    assert set(entries.values()) == set(kept.values()) | {f"process-{n}.png" for n in range(count)}
    conn = sqlite3.connect(history.path)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()


PROCESSES, THREADS, RUNS = 3, 4, 4  # per round 48 runs from the workers; 7 more from this process if 'existing'
ROUNDS = 20


def open_files(path: Path) -> list[str]:
    """This process's open files that are the database or its -wal and -shm."""
    links = []
    for fd in os.listdir("/proc/self/fd"):  # the listing's own descriptor is gone by now
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    return [link for link in links if link.startswith(str(path))]


def stress_worker(orders, results, start) -> None:
    """One process of the stress test, kept for every round as an app's process would be: per
    order (a data dir), THREADS threads add RUNS runs each, at once with the other processes;
    back come the ids with their names. Half the threads share the process's History, as its
    runtime's; the others make one for each run, as a short CLI process does."""
    config = load_config(ROOT / "config.yaml")
    while (data := orders.get()) is not None:
        os.environ["CHATVLMLLM_DATA_DIR"] = data
        shared, kept, failures, warnings, go = History(config), [], [], [], threading.Barrier(THREADS)

        def add(t: int) -> None:
            go.wait()
            for n in range(RUNS):
                name = f"{os.getpid()}-{t}-{n}.png"
                history = shared if t % 2 else History(config)
                try:
                    kept.append((history.add(make_run(name), name, name.encode()), name))
                except Exception as exc:  # noqa: BLE001 — every failure is the finding
                    failures.append(repr(exc))
                if history.warning:
                    warnings.append(str(history.warning))

        threads = [threading.Thread(target=add, args=(t,)) for t in range(THREADS)]
        start.wait()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each thread's connection ends with it: none is left open to leak.
        results.put((kept, failures, warnings, open_files(Path(data) / "history.sqlite3")))


@pytest.fixture(scope="module")
def stress_workers():
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(PROCESSES + 1)
    orders, results = spawn.Queue(), spawn.Queue()
    workers = [spawn.Process(target=stress_worker, args=(orders, results, start)) for _ in range(PROCESSES)]
    # A spawned child runs the parent's __main__ again first; Streamlit's AppTest.from_function
    # (an earlier test file) leaves __main__ as a temporary script that fails outside its run.
    with mock.patch.dict(sys.modules, {"__main__": types.ModuleType("__main__")}):
        for worker in workers:
            worker.start()
    yield orders, results, start
    for _ in workers:
        orders.put(None)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0


@pytest.mark.parametrize("existing", [False, True], ids=["created-at-once", "existing"])
def test_many_processes_and_threads_lose_no_run(stress_workers, existing, config, tmp_path):
    """Every id add() returned is in the database afterwards and SQLite finds it whole: with
    the database created by everyone at once, and with one already there that this process
    holds open and writes to during the round."""
    orders, results, start = stress_workers
    for round_ in range(ROUNDS):
        data = tmp_path / f"round-{round_}"
        os.environ["CHATVLMLLM_DATA_DIR"] = str(data)
        history = History(config)
        before = [(history.add(make_run("before"), "before.png", b"before"), "before.png")] if existing else []
        for _ in range(PROCESSES):
            orders.put(str(data))
        start.wait(timeout=60)
        mine = [(history.add(make_run(f"main {n}"), f"main-{n}.png", b"main"), f"main-{n}.png")
                for n in range(6)] if existing else []
        kept, failures, warnings, left_open = before + mine, [], [], []
        for _ in range(PROCESSES):
            worker_kept, worker_failures, worker_warnings, files = results.get(timeout=120)
            kept += worker_kept
            failures += worker_failures
            warnings += worker_warnings
            left_open += files
        assert len(kept) + len(failures) == len(before + mine) + PROCESSES * THREADS * RUNS
        conn = sqlite3.connect(data / "history.sqlite3")
        try:
            check = conn.execute("PRAGMA integrity_check").fetchall()
            stored = dict(conn.execute("SELECT id, name FROM runs"))
        finally:
            conn.close()
        lost = {run_id: name for run_id, name in kept if stored.get(run_id) != name}
        assert (f"round {round_}", lost, failures, warnings, left_open, check) == \
            (f"round {round_}", {}, [], [], [], [("ok",)])
        files = {f"history.sqlite3{end}" for end in ("", "-wal", "-shm", ".lock")}
        assert {path.name for path in data.iterdir()} <= files  # nothing moved aside


def damaged(path: Path, reason: str) -> str:
    return (f"The history database {path} is damaged ({reason}), so no run is kept in it; "
            "move the file away (nothing was deleted) and a new history starts.")


def test_a_garbage_file_is_left_as_it_is_and_the_history_says_so(config):
    """Renaming a file that other processes have open would send their runs into the renamed
    file: SQLite's own error finds the damage, the file stays, and the reading goes on."""
    history = History(config)
    history.path.write_bytes(b"this is not a database " * 100)
    assert history.add(make_run(), "lost.png", b"lost") is None
    assert history.warning == damaged(history.path, "file is not a database")
    with pytest.raises(HistoryError) as error:
        History(config).list()
    assert error.value.message == damaged(history.path, "file is not a database")
    assert history.path.read_bytes() == b"this is not a database " * 100
    assert [path.name for path in history.path.parent.iterdir()] == ["history.sqlite3"]

    other_thread = in_a_thread(lambda: (history.add(make_run(), "lost.png", b"lost"), history.warning))
    assert other_thread == (None, damaged(history.path, "file is not a database"))

    # One History may serve the whole process: once the file is moved away, as the sentence
    # says, the same one keeps runs again and no longer warns.
    history.path.rename(history.path.with_name("kept-aside.sqlite3"))
    new = history.add(make_run(), "after.png", b"after")
    assert [e.id for e in history.list()] == [new] and history.warning is None


def test_a_truncated_file_is_left_as_it_is_and_the_history_says_so(config):
    in_a_thread(lambda: History(config).add(make_run(noise=300), "before.png", os.urandom(200_000)))
    path = Path(os.environ["CHATVLMLLM_DATA_DIR"]) / "history.sqlite3"
    size = path.stat().st_size
    os.truncate(path, size // 2)
    history = History(config)
    assert history.add(make_run(), "lost.png", b"lost") is None
    assert history.warning == damaged(path, "database disk image is malformed")
    with pytest.raises(HistoryError, match="is damaged"):
        history.get(1)
    assert path.stat().st_size == size // 2
    path.rename(path.with_name("kept-aside.sqlite3"))
    history.add(make_run(), "after.png", b"after")
    assert [e.name for e in History(config).list()] == ["after.png"]


def test_a_history_moved_away_while_this_thread_has_it_open_starts_anew(config):
    """A connection writes on into the file it opened: a run kept after the user moved the
    history away (to clear it) must land in the new file at the path, not the moved one."""
    history = History(config)
    first = history.add(make_run(), "first.png", b"first")
    aside = history.path.with_name("cleared")
    aside.mkdir()
    for end in ("", "-wal", "-shm"):  # all three, as a person clearing the history would
        Path(f"{history.path}{end}").rename(aside / f"history.sqlite3{end}")
    second = history.add(make_run(), "second.png", b"second")
    assert [(e.id, e.name) for e in history.list()] == [(second, "second.png")]
    assert runs_table(aside / "history.sqlite3") == ["first.png"] and first is not None


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
    assert read.stderr.strip().splitlines()[-1] == damaged(path, "file is not a database")
    listed = cli("history")
    assert listed.returncode != 0 and listed.stderr.strip() == f"error: {damaged(path, 'file is not a database')}"
    assert path.read_bytes() == b"\0garbage" * 512


def corrected(run, name: str, value):
    """The fields of ``run`` with a person's value for ``name``, as models.fields.collect checks it."""
    from models.fields.collect import correct

    template = load_config(ROOT / "config.yaml").template(run.result.template)
    return correct(template, run.result.fields, name, value)


def test_a_fields_run_keeps_its_corrections_beside_the_values_read(config):
    from tests.helpers import tender_run

    history = History(config)
    run, document = tender_run()
    run_id = history.add(run, "tender.pdf", document)
    assert history.get(run_id).choice.template == "tender_notice"
    fields = history.correct_fields(run_id, {"customer_kpp": "773601001"})
    assert fields == corrected(run, "customer_kpp", "773601001")

    stored = history.get(run_id)
    assert stored.result.fields == fields
    kpp = next(f for f in stored.result.fields if f.name == "customer_kpp")
    assert (kpp.status, kpp.value, kpp.corrected, kpp.original) == ("valid", "773601001", True, "77360100")
    assert stored.run.history_id == run_id
    assert [p.model_dump() for p in stored.result.pages] == [p.model_dump() for p in run.result.pages]
    # The row's size follows its result, so the total cap still counts what is kept.
    assert runs_table(history.path, "size") == [len(stored.result.model_dump_json(context=history_module.RAW).encode())]


def test_two_sessions_correcting_one_run_at_once_keep_both_corrections(config):
    """Each correction is applied to the fields as stored, in one write transaction with the
    read: neither session overwrites the other's with the value it had read before."""
    from tests.helpers import tender_run

    run, document = tender_run()
    run_id = History(config).add(run, "tender.pdf", document)
    orders = [{"customer_kpp": "773601001"}, {"customer_inn": "7707083894"}]
    start = threading.Barrier(len(orders))
    history = History(config)  # one per process, as the app's runtime has it: a connection per thread

    def session(changes):
        start.wait()
        history.correct_fields(run_id, changes)

    threads = [threading.Thread(target=session, args=(changes,)) for changes in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fields = {f.name: f for f in history.get(run_id).result.fields}
    assert (fields["customer_kpp"].status, fields["customer_kpp"].original) == ("valid", "77360100")
    assert (fields["customer_inn"].status, fields["customer_inn"].original) == ("invalid", "7707083893")
    assert fields["initial_price"].status == "conflict"


def test_a_corrected_bik_checks_the_account_another_session_corrected(config):
    """Session A corrects the account (of another bank); session B, opened before A's
    correction, corrects the BIK: A's account stays, and is checked against B's BIK."""
    from models.fields.collect import collect
    from models.fields.result import FoundValue
    from tests.fields_pages import account_for
    from tests.helpers import tender_run

    template = load_config(ROOT / "config.yaml").template("tender_notice")
    run, document = tender_run()
    read_account, right_account = account_for("044525225"), account_for("044525974", "40702810{}00000099999")
    run.result.fields = collect(template, [FoundValue(name="bik", value="044525225", page=0),
                                           FoundValue(name="account", value=read_account, page=0)])
    history = History(config)
    run_id = history.add(run, "tender.pdf", document)
    after_a = {f.name: f for f in history.correct_fields(run_id, {"account": right_account})}
    assert after_a["account"].status == "invalid"  # not the read BIK's account
    after_b = history.correct_fields(run_id, {"bik": "044525974"})
    assert after_b == history.get(run_id).result.fields  # what the session shows is what is kept
    account = next(f for f in after_b if f.name == "account")
    assert (account.value, account.status, account.corrected, account.original) == (
        right_account, "valid", True, read_account)


def test_a_correction_of_a_run_whose_template_changed_is_one_sentence(config):
    from tests.helpers import tender_run

    run, document = tender_run()
    run_id = History(config).add(run, "tender.pdf", document)
    changed = config.templates["tender_notice"].model_copy(update={"fields": config.templates["invoice"].fields})
    history = History(config.model_copy(update={"templates": {**config.templates, "tender_notice": changed}}))
    with pytest.raises(HistoryError) as error:
        history.correct_fields(run_id, {"customer_kpp": "773601001"})
    assert error.value.message == ("The template 'tender_notice' is no longer in config.yaml as it was, so the "
                                   "values of 'tender.pdf' cannot be corrected.")
    assert history.get(run_id).result.fields == run.result.fields


def test_a_correction_of_a_run_no_longer_kept_is_one_sentence(config):
    from tests.helpers import tender_run

    run, document = tender_run()
    change = {"customer_kpp": "773601001"}

    def deleted_then_corrected():  # in a thread that ends, so nothing here holds the file open
        history = History(config)
        run_id = history.add(run, "tender.pdf", document)
        history.delete(run_id)
        with pytest.raises(HistoryError) as error:
            history.correct_fields(run_id, change)
        return run_id, error.value.message

    run_id, message = in_a_thread(deleted_then_corrected)
    assert message == (f"There is no run {run_id} in the history; it was deleted, or removed to "
                       "stay under history.max_total_mb.")
    history = History(config)
    history.path.write_bytes(b"this is not a database " * 100)
    with pytest.raises(HistoryError) as error:
        history.correct_fields(run_id, change)
    assert error.value.message == damaged(history.path, "file is not a database")
