"""The app in a real headless Chromium: upload a Russian+English page, read it in CPU mode."""

import csv
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.conftest import ROOT
from tests.helpers import MIXED, cer, encode, render_lines

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    yield from serve_app(tmp_path_factory, {})


def serve_app(tmp_path_factory, extra_env: dict):
    port = free_port()
    env = {**os.environ, "CHATVLMLLM_DATA_DIR": str(tmp_path_factory.mktemp("data")), **extra_env}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"streamlit exited with {server.returncode}: {server.stdout.read()[-2000:]}")
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("streamlit did not answer /_stcore/health within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed: apt-get install chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


def open_app(browser, url: str, tmp_path, height: int = 1000):
    """A browser page on the app, and a rendered Russian+English scan to upload."""
    scan = tmp_path / "tender.png"
    scan.write_bytes(encode(render_lines(MIXED), "PNG"))
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(url)
    page.get_by_text("Read a document").wait_for(timeout=60_000)
    return page, scan


def loaded_image(page):
    """The first image on the page once the browser has it: a tab shows its <img> before the
    picture arrives, and an image still loading measures 0 wide. A broken one fails here."""
    image = page.get_by_test_id("stImage").locator("img").first
    image.wait_for(timeout=30_000)
    image.evaluate("img => img.decode()")
    return image


def click_to_download(page, button):
    """The file a download button gives. A button that appears while the app reruns (a
    finished run redraws the page once more) can be replaced just as it is clicked, and that
    click is lost: click again, up to three times."""
    for attempt in range(3):
        try:
            with page.expect_download(timeout=15_000) as download:
                button.click()
            return download.value
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def test_read_a_page_in_the_browser(app_url, browser, tmp_path):
    page, scan = open_app(browser, app_url, tmp_path)
    sidebar = page.get_by_test_id("stSidebar")
    assert "Active model: Tesseract 5" in sidebar.inner_text()

    page.locator("input[type=file]").set_input_files(str(scan))
    run = page.get_by_role("button", name="Run")
    run.wait_for(timeout=30_000)
    run.click()
    page.get_by_text("Read 1 of 1 pages with tesseract").wait_for(timeout=120_000)

    text = page.get_by_test_id("stCode").first.inner_text()
    assert cer("\n".join(MIXED), text) <= 0.02, text

    page.get_by_role("tab", name="Layout").click()
    overlay = loaded_image(page)
    assert overlay.evaluate("img => img.naturalWidth") > 0
    page.get_by_role("tab", name="Text").click()
    (ROOT / "test-results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-results" / "browser.png"), full_page=True)


def test_bad_upload_shows_one_sentence_in_the_browser(app_url, browser, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("these are notes, not a scan\n")
    page = browser.new_page()
    page.goto(app_url)
    page.locator("input[type=file]").set_input_files(str(bad))
    alert = page.get_by_test_id("stAlertContentError")
    alert.wait_for(timeout=30_000)
    assert alert.inner_text().strip() == "'notes.png' is not a PNG file: it holds text."
    assert "Traceback" not in page.content()


@pytest.fixture(scope="module")
def stub():
    from tests.fixtures.openai_stub import OpenAIStub

    server = OpenAIStub()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stub_app(tmp_path_factory, stub):
    from tests.test_openai_engine import stub_config

    folder = tmp_path_factory.mktemp("stub")
    stub_config(folder, stub.url)
    yield from serve_app(tmp_path_factory, {"CHATVLMLLM_CONFIG": str(folder / "stub.yaml")})


def test_layout_overlay_from_a_dots_ocr_answer(stub_app, browser, tmp_path):
    """dots.ocr's layout answer (replayed by a stub endpoint) drawn on the page in the browser."""
    from tests.helpers import line_boxes

    page, scan = open_app(browser, stub_app, tmp_path, height=1100)
    page.get_by_text("vLLM", exact=True).click()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Remote endpoint:").wait_for(timeout=30_000)
    page.locator("input[type=file]").set_input_files(str(scan))
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Read 1 of 1 pages with remote").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Layout").click()
    overlay = loaded_image(page)
    # Sample the overlay where the first drawn line's box edge must be, in page pixels.
    x0, y0, x1, y1 = line_boxes(MIXED)[0]
    # Streamlit may serve the image scaled down; the box must scale with it.
    colour = overlay.evaluate(
        """(img, [x, y, width]) => { const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const s = img.naturalWidth / width;
            return Array.from(g.getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data).slice(0, 3); }""",
        [x0 + 30, y0 + 2, 1654])
    ratio = overlay.evaluate("img => img.naturalHeight / img.naturalWidth")
    assert abs(ratio - 2339 / 1654) < 0.01
    expected = (31, 119, 180)  # the Text category's colour, on the first line's top edge
    assert all(abs(a - b) <= 40 for a, b in zip(colour, expected)), colour
    (ROOT / "test-results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-results" / "browser-layout.png"), full_page=True)


def test_the_answer_shows_as_it_is_generated(stub_app, stub, browser, tmp_path):
    """The stub stops after three pieces of its answer: the page view shows those three, as
    plain text, while the page is read; the whole answer then shows as the usual result."""
    import threading

    thinking = threading.Event()
    stub.chunk_delay = lambda n: (thinking.wait(120) and 0) if n == 3 else 0
    try:
        page, scan = open_app(browser, stub_app, tmp_path)
        page.get_by_text("vLLM", exact=True).click()
        page.get_by_test_id("stSidebar").get_by_text("Remote endpoint:").wait_for(timeout=30_000)
        page.locator("input[type=file]").set_input_files(str(scan))
        page.get_by_role("button", name="Run").click()
        page.get_by_text("Page 1 — reading…").wait_for(timeout=60_000)
        so_far = "".join(stub.streams[-1].pieces[:3])
        page.wait_for_function("text => [...document.querySelectorAll('[data-testid=stCode]')]"
                               ".some(code => code.innerText.trim() === text)", arg=so_far, timeout=30_000)
        assert page.get_by_text("Read 1 of 1 pages").count() == 0
    finally:
        thinking.set()
        stub.chunk_delay = 0
    page.get_by_text("Read 1 of 1 pages with remote").wait_for(timeout=60_000)
    assert page.get_by_text("Page 1 — reading…").count() == 0
    assert page.get_by_test_id("stCode").first.inner_text().startswith("line 1")


@pytest.fixture(scope="module")
def slow_start(tmp_path_factory, docker_client):
    """A model server that stays "loading" until the test creates its go file."""
    from models.config import load_config
    from tests.containers import fake_entry, write_config

    folder = tmp_path_factory.mktemp("slow")
    signal = folder / "signal"
    signal.mkdir()
    signal.chmod(0o777)
    entry = fake_entry("fake_a", delay=0, extra_args=["--wait-for", "/signal/go"])
    entry["vllm"]["volumes"] = [f"{signal}:/signal:ro"]
    path = write_config(folder / "slow.yaml", {"fake_a": entry})
    for url in serve_app(tmp_path_factory, {"CHATVLMLLM_CONFIG": str(path)}):
        yield url, load_config(path), signal / "go"


@pytest.mark.docker
def test_clicking_around_while_a_model_starts_does_not_stop_it(slow_start, browser, clean_docker):
    """Why 6: a rerun (any click), a reload or a second tab never stops a start under way."""
    from managers.container_manager import SingleContainerManager
    from managers.containers import State
    from tests.containers import running_managed

    url, config, go = slow_start
    manager = SingleContainerManager(config)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_text("vLLM", exact=True).click()
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("button", name="Start").click()
    sidebar.get_by_text("starting chatvlmllm-test-fake_a").first.wait_for(timeout=60_000)
    assert manager.status()["fake_a"].state is State.STARTING
    page.get_by_text("CPU", exact=True).click()  # another widget: the script reruns
    page.get_by_text("Upload scans, photos or PDFs to read them.").wait_for(timeout=30_000)
    page.reload()
    other = browser.new_page()
    other.goto(url)
    other.get_by_text("Read a document").wait_for(timeout=60_000)
    assert manager.status()["fake_a"].state is State.STARTING  # still going, not stopped
    go.touch()  # the server may finish loading now
    deadline = time.monotonic() + 120
    while manager.status()["fake_a"].state is not State.READY:
        assert time.monotonic() < deadline, "the start never finished"
        time.sleep(0.5)
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]
    other.get_by_text("vLLM", exact=True).click()
    other.get_by_test_id("stSidebar").get_by_text("Active model: Fake fake_a (ready)").wait_for(timeout=60_000)


def test_several_files_are_read_and_downloaded_as_one_zip(app_url, browser, tmp_path):
    import io
    import zipfile

    from tests.helpers import ENGLISH, RUSSIAN

    files = []
    for name, lines in (("russian.png", RUSSIAN), ("english.png", ENGLISH)):
        files.append(tmp_path / name)
        files[-1].write_bytes(encode(render_lines(lines), "PNG"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.get_by_text("Read a document").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files([str(f) for f in files])
    page.get_by_role("button", name="Run on 2 files").click()
    page.get_by_role("button", name="All 2 files as .zip (txt)").wait_for(timeout=120_000)
    download = click_to_download(page, page.get_by_role("button", name="All 2 files as .zip (txt)"))
    with zipfile.ZipFile(io.BytesIO(download.path().read_bytes())) as archive:
        texts = {name: archive.read(name).decode() for name in archive.namelist()}
    assert set(texts) == {"russian.txt", "english.txt"}
    assert cer("\n".join(RUSSIAN), texts["russian.txt"]) <= 0.02
    assert cer("\n".join(ENGLISH), texts["english.txt"]) <= 0.02


def test_a_result_is_reopened_from_history_after_a_restart(browser, tmp_path, tmp_path_factory):
    data = tmp_path / "data"
    scan = tmp_path / "tender.png"
    scan.write_bytes(encode(render_lines(MIXED), "PNG"))
    first = serve_app(tmp_path_factory, {"CHATVLMLLM_DATA_DIR": str(data)})
    url = next(first)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator("input[type=file]").set_input_files(str(scan))
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Read 1 of 1 pages with tesseract").wait_for(timeout=120_000)
    first.close()  # the app process ends
    second = serve_app(tmp_path_factory, {"CHATVLMLLM_DATA_DIR": str(data)})
    url = next(second)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_text("History", exact=True).click()
        page.get_by_text("Read 1 of 1 pages with tesseract").wait_for(timeout=60_000)
        assert cer("\n".join(MIXED), page.get_by_test_id("stCode").first.inner_text()) <= 0.02
        page.get_by_role("tab", name="Layout").click()
        assert loaded_image(page).evaluate("img => img.naturalWidth") > 0
        (ROOT / "test-results").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-results" / "browser-history.png"), full_page=True)
    finally:
        second.close()


@pytest.fixture(scope="module")
def compare_app(tmp_path_factory):
    """The app with Qwen3-VL on a stub endpoint that answers the true text with known edits."""
    from tests.test_eval import QuietStub, stub_answer, write_config

    server = QuietStub(answer=stub_answer)
    folder = tmp_path_factory.mktemp("compare")
    qwen = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["qwen3_vl_2b"]
    qwen["vllm"] = {"endpoint": server.url, "served_model_name": "stub"}
    path = write_config(folder / "stub.yaml", {"qwen3_vl_2b": qwen})
    try:
        yield from serve_app(tmp_path_factory, {"CHATVLMLLM_CONFIG": str(path)})
    finally:
        server.close()


def test_two_models_side_by_side_with_their_differences(compare_app, browser, tmp_path):
    """Compare: the stub's reading and Tesseract's, scored against the pasted true text; the
    stub's substituted word and the word it left out are marked where a person looks."""
    from tests.test_eval import MIXED_CHARS, MIXED_TRUTH

    page, scan = open_app(browser, compare_app, tmp_path, height=2000)
    page.get_by_test_id("stSidebar").get_by_text("Compare", exact=True).click()
    # The Read view's uploader may still be on the page while the Compare view is drawn:
    # the file goes to the Compare view's own one.
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Document image or PDF")
    uploader.locator("input[type=file]").set_input_files(str(scan))
    uploader.get_by_text("tender.png").wait_for(timeout=30_000)  # the upload reached the app
    page.get_by_text("True text (optional)").click()
    truth = page.get_by_role("textbox", name="Paste the true text")
    truth.fill(MIXED_TRUTH)
    truth.press("Control+Enter")
    button = page.get_by_role("button", name="Compare", exact=True)
    page.wait_for_function("() => [...document.querySelectorAll('button')].some("
                           "b => b.innerText.trim() === 'Compare' && !b.disabled)", timeout=30_000)
    button.click()
    page.get_by_text("Differences against").wait_for(timeout=120_000)
    sides = page.locator("div.diff-text")
    sides.nth(1).wait_for(timeout=30_000)
    assert sides.count() == 2
    assert page.get_by_text(f"CER {6 / MIXED_CHARS:.1%} · WER {2 / 29:.1%}").count() == 1
    stub_side = sides.nth(0)
    marked = stub_side.locator("span.diff-replace")
    assert marked.count() == 1 and marked.inner_text() == "оборудовання"
    assert marked.get_attribute("title") == "оборудования"
    colour = marked.evaluate("span => getComputedStyle(span).backgroundColor")
    assert colour == "rgb(255, 232, 163)", colour  # amber, as views/diff.py draws a substitution
    assert sides.nth(1).locator("span.diff-insert").inner_text() == "lazy"
    assert page.get_by_test_id("stImage").count() == 2
    (ROOT / "test-results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-results" / "browser-compare.png"), full_page=True)


def test_a_russian_browser_gets_the_russian_interface_and_reads_a_page(app_url, browser, tmp_path):
    """ui.language is auto in the shipped config: a browser that asks for Russian gets the
    interface in Russian, reads a page, and sees the result, numbers and all, in Russian."""
    scan = tmp_path / "tender.png"
    scan.write_bytes(encode(render_lines(MIXED), "PNG"))
    context = browser.new_context(locale="ru-RU", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.get_by_text("Распознавание документа").wait_for(timeout=60_000)
    sidebar = page.get_by_test_id("stSidebar")
    assert "Активная модель: Tesseract 5" in sidebar.inner_text()
    page.locator("input[type=file]").set_input_files(str(scan))
    page.get_by_role("button", name="Запуск").click()
    done = page.get_by_text("Распознано 1 из 1 страницы с помощью tesseract за")
    done.wait_for(timeout=120_000)
    assert re.search(r"за \d+,\d с\.$", done.inner_text().strip()), done.inner_text()  # a decimal comma
    assert cer("\n".join(MIXED), page.get_by_test_id("stCode").first.inner_text()) <= 0.02
    page.get_by_role("tab", name="Разметка").click()
    assert loaded_image(page).evaluate("img => img.naturalWidth") > 0
    assert "Read a document" not in page.content()
    (ROOT / "test-results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-results" / "browser-ru.png"), full_page=True)
    context.close()


def hostile_answer(url: str) -> str:
    """An answer that loads an image, links away, runs script three ways and breaks out of a
    formula, each to ``url``, if it is rendered as Markdown or HTML."""
    return (f"# Offer from {url}/heading\n\nSee ![x]({url}/leak) and [the terms]({url}/link).\n\n"
            f'<img src="{url}/img" onerror="window.__pwned=1;fetch(\'{url}/onerror\')">\n\n'
            f"<script>window.__pwned=1;fetch('{url}/script')</script>\n\n"
            f"$$\nx\n$$\n![f]({url}/formula)\n$$\n\n"
            f"$$\n\\includegraphics{{{url}/katex.png}} \\href{{{url}/href}}{{y}} \\url{{{url}/url}}\n$$\n")


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    """The app with Qwen3-VL on a stub endpoint whose every answer, the page's and the chat's,
    is hostile; and the server its links point to."""
    from tests.test_eval import QuietStub, write_config

    recorder = QuietStub()  # it answers nothing the browser could use, and records every request
    server = QuietStub(answer=lambda image: hostile_answer(recorder.url))
    folder = tmp_path_factory.mktemp("hostile")
    qwen = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["qwen3_vl_2b"]
    qwen["vllm"] = {"endpoint": server.url, "served_model_name": "stub"}
    path = write_config(folder / "stub.yaml", {"qwen3_vl_2b": qwen})
    try:
        for url in serve_app(tmp_path_factory, {"CHATVLMLLM_CONFIG": str(path)}):
            yield url, recorder
    finally:
        server.close()
        recorder.close()


def test_a_hostile_answer_loads_nothing_and_runs_nothing(hostile_app, browser, tmp_path):
    """Issue 17, point 6: the answer's image, link, <img onerror> and <script> reach no server
    and run nothing, in the Markdown and Text tabs and in the chat; its addresses show as text."""
    url, recorder = hostile_app
    page, scan = open_app(browser, url, tmp_path, height=1400)
    asked = []  # every request the page makes to the recorder's port
    page.on("request", lambda request: asked.append(request.url) if request.url.startswith(recorder.url) else None)
    page.get_by_text("vLLM", exact=True).click()
    page.get_by_test_id("stSidebar").get_by_text("Remote endpoint:").wait_for(timeout=30_000)
    page.locator("input[type=file]").set_input_files(str(scan))
    page.get_by_test_id("stSelectbox").filter(has_text="Task").click()
    page.get_by_role("option", name="Document to Markdown (qwenvl markdown)").click()
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Read 1 of 1 pages with").wait_for(timeout=60_000)

    page.get_by_role("tab", name="Chat").click()
    question = page.get_by_test_id("stChatInputTextArea")
    question.fill("What is on the page?")
    question.press("Enter")
    page.get_by_test_id("stChatMessage").filter(has_text="the terms").last.wait_for(timeout=60_000)
    assert reached(page, recorder, asked) == []
    answer = page.get_by_test_id("stChatMessage").filter(has_text=f"![x]({recorder.url}/leak)")
    assert answer.count() == 1  # the answer as text, as the model wrote it
    page.get_by_role("tab", name="Markdown").click()
    markdown = page.get_by_role("tabpanel", name="Markdown")
    markdown.get_by_text(f"See x ({recorder.url}/leak) and the terms ({recorder.url}/link).",
                         exact=True).wait_for(timeout=30_000)
    assert markdown.get_by_role("heading", name=f"Offer from {recorder.url}/heading").count() == 1
    # a "formula" that would end its $$ block early is no formula: text, its image an address
    formula = markdown.get_by_test_id("stText").filter(has_text=f"f ({recorder.url}/formula)")
    assert formula.count() == 1
    assert markdown.locator(".katex").count() == 1  # the other, drawn by KaTeX, which follows no address
    (ROOT / "test-results").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-results" / "browser-hostile.png"), full_page=True)
    page.get_by_role("tab", name="Text").click()
    text = page.get_by_role("tabpanel", name="Text").get_by_test_id("stCode").inner_text()
    assert f"x ({recorder.url}/leak)" in text

    links = page.locator(f"img[src^='{recorder.url}'], a[href^='{recorder.url}']")
    assert links.count() == 0, links.first.evaluate("e => e.parentElement.outerHTML")
    assert page.evaluate("() => window.__pwned") is None
    assert reached(page, recorder, asked) == []


def reached(page, recorder, asked: list[str]) -> list[str]:
    """Every address of the recorder's that the page asked for, the browser fetched, or the
    recorder got."""
    fetched = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
    return [*asked, *(name for name in fetched if name.startswith(recorder.url)), *recorder.paths]


# The colour of a point of the first image on the page, in the page's own pixels (Streamlit
# may serve the image scaled down: the point scales with it); null while it is still loading.
PIXEL = """([x, y, width]) => { const img = document.querySelector('[data-testid=stImage] img');
    if (!img || !img.complete || !img.naturalWidth) return null;
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0); const s = img.naturalWidth / width;
    return Array.from(g.getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data).slice(0, 3); }"""


def wait_for_colour(page, point, colour):
    page.wait_for_function(f"""(arg) => {{ const got = ({PIXEL})(arg);
        return got !== null && got.every((v, i) => Math.abs(v - arg[3][i]) <= 40); }}""",
                           arg=[*point, 1654, list(colour)], timeout=60_000)


def wait_for_cell(page, cell: str, text: str):
    """A cell of the data editor as its accessible table has it (the grid itself is drawn on a
    canvas); a rerun may show the old editor beside the new one for a moment."""
    page.wait_for_function(f"""text => [...document.querySelectorAll('[data-testid="{cell}"]')]
        .some(c => c.innerText.trim() === text)""", arg=text, timeout=60_000)


def test_a_value_corrected_in_the_table_is_checked_and_kept_in_the_history(browser, tmp_path, tmp_path_factory,
                                                                          monkeypatch):
    """A fields run in the history — TENDER's values as an engine gives them, collected as the
    runner does (Tesseract's rules for fields are another part of issue 18) — reopened in the
    app: the KPP read one digit short is typed again in the data editor; its status turns
    valid, its box on the page turns from red to green, and the history keeps the correction
    beside the value read, so the run reopened shows it."""
    from managers.history import History
    from models.config import load_config
    from tests.helpers import TENDER, line_boxes, tender_run
    from views.fields import COLOURS

    data = tmp_path / "data"
    monkeypatch.setenv("CHATVLMLLM_DATA_DIR", str(data))
    history = History(load_config())
    run, document = tender_run()
    run_id = history.add(run, "tender.pdf", document)
    server = serve_app(tmp_path_factory, {"CHATVLMLLM_DATA_DIR": str(data)})
    url = next(server)
    x1, _y1, x2, y2 = line_boxes(TENDER[0])[2]
    edge = ((x1 + x2) // 2, y2 - 2)  # inside the bottom line of the KPP's box
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_text("History", exact=True).click()
        # Row 4 (index 3) is the KPP: column 2 its value, column 3 its status.
        wait_for_cell(page, "glide-cell-3-3", "invalid: a KPP has 9 characters: 4 digits, 2 digits or letters, "
                                              "3 digits")
        wait_for_colour(page, edge, COLOURS["invalid"])
        # The keyboard moves the grid's selection from its first cell to the KPP's value.
        page.get_by_test_id("glide-cell-0-0").focus()
        for key in ["ArrowRight", "ArrowRight", "ArrowDown", "ArrowDown", "ArrowDown", "Enter"]:
            page.keyboard.press(key)
        editor = page.locator("textarea.gdg-input")
        expect(editor).to_have_value("77360100")  # the KPP's cell is open
        # Into the editor itself: keys typed before it has the focus would be lost.
        editor.fill("773601001")
        editor.press("Enter")
        wait_for_cell(page, "glide-cell-3-3", "valid")
        wait_for_colour(page, edge, COLOURS["valid"])
        kpp = next(f for f in history.get(run_id).result.fields if f.name == "customer_kpp")
        assert (kpp.value, kpp.status, kpp.corrected, kpp.original) == ("773601001", "valid", True, "77360100")
        # The one document downloads as its sheet, the correction in it.
        sheet = click_to_download(page, page.get_by_role("button", name="Fields .csv"))
        header, row = csv.reader(io.StringIO(sheet.path().read_bytes().decode("utf-8-sig")))
        cell = dict(zip(header, row))
        assert (cell["Customer's KPP"], cell["Customer's KPP: check"]) == (
            "773601001", "valid; corrected by hand, read as: 77360100")
        (ROOT / "test-results").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-results" / "browser-fields.png"), full_page=True)

        page.reload()
        page.get_by_test_id("stSidebar").get_by_text("History", exact=True).click()
        wait_for_cell(page, "glide-cell-2-3", "773601001")
        wait_for_cell(page, "glide-cell-3-3", "valid")
    finally:
        server.close()
