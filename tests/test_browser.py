"""The app in a real headless Chromium: upload a Russian+English page, read it in CPU mode."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.helpers import MIXED, cer, encode, render_lines

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = free_port()
    env = {**os.environ, "CHATVLMLLM_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
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


def test_read_a_page_in_the_browser(app_url, browser, tmp_path):
    scan = tmp_path / "tender.png"
    scan.write_bytes(encode(render_lines(MIXED), "PNG"))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.get_by_text("Read a document").wait_for(timeout=60_000)
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
    overlay = page.get_by_test_id("stImage").locator("img").first
    overlay.wait_for(timeout=30_000)
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
