import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.helpers import ENGLISH, MIXED, RUSSIAN, cer, encode, pdf_of_images, render_lines
from tests.test_document import bad_inputs


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    (folder / "mixed.png").write_bytes(encode(render_lines(MIXED), "PNG"))
    (folder / "two.pdf").write_bytes(pdf_of_images([render_lines(RUSSIAN), render_lines(ENGLISH)]))
    return folder


def test_help_on_every_command():
    for args in ([], ["models"], ["ocr"], ["eval"]):
        done = cli(*args, "--help")
        assert done.returncode == 0 and "usage: cli.py" in done.stdout


def test_models_table_says_what_runs_here():
    done = cli("models", env={"DOCKER_HOST": "unix:///nonexistent.sock", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["KEY", "NAME", "MODE", "VRAM", "EXPECTED", "AVAILABLE", "HERE"]
    tesseract = next(line for line in lines if line.startswith("tesseract"))
    assert tesseract.split()[-1] == "yes"
    qwen = next(line for line in lines if line.startswith("qwen3_vl_2b") and " vLLM " in line)
    assert "Docker engine not reachable at unix:///nonexistent.sock" in qwen
    assert {line.split()[0] for line in lines[1:]} == {
        "dots_ocr", "qwen3_vl_2b", "qwen2_vl_2b", "phi35_vision", "paddleocr_vl", "tesseract"}


def test_ocr_to_stdout(scans):
    done = cli("ocr", scans / "mixed.png", "--model", "tesseract")
    assert done.returncode == 0, done.stderr
    assert cer("\n".join(MIXED), done.stdout) <= 0.02
    assert "mixed.png [" in done.stderr and "1/1 pages" in done.stderr


def test_pdf_pages_are_separated_by_form_feed(scans):
    done = cli("ocr", scans / "two.pdf", "--model", "tesseract", "--mode", "cpu")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.rstrip("\n").split("\f")
    assert cer("\n".join(RUSSIAN), first) <= 0.02 and cer("\n".join(ENGLISH), second) <= 0.02


def test_page_range_and_json(scans):
    done = cli("ocr", scans / "two.pdf", "--model", "tesseract", "--pages", "2", "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [p["index"] for p in result["pages"]] == [1]
    assert cer("\n".join(ENGLISH), result["pages"][0]["text"]) <= 0.02
    assert result["pages"][0]["blocks"][0]["category"] == "Text"


def test_out_dir_gets_one_file_per_document(scans, tmp_path):
    done = cli("ocr", scans / "mixed.png", scans / "two.pdf", "--model", "tesseract", "--format", "md",
               "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mixed.md", "two.md"]
    assert "<!-- page 2 -->" in (tmp_path / "out" / "two.md").read_text()


@pytest.mark.parametrize("case", list(bad_inputs()))
def test_bad_input_is_one_line_and_a_failing_exit(tmp_path, case):
    data, name, expected = bad_inputs()[case]
    (tmp_path / name).write_bytes(data)
    done = cli("ocr", tmp_path / name, "--model", "tesseract")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args, expected", [
    (["--model", "nope"], "error: Unknown model 'nope'; known models: dots_ocr"),
    (["--model", "tesseract", "--task", "layout"], "error: Tesseract 5 has no task 'layout'"),
    (["--model", "qwen3_vl_2b", "--mode", "local"], "error: The weights of Qwen/Qwen3-VL-2B-Instruct are not on this machine"),
    (["--model", "tesseract", "--pages", "3-4"], "error: Pages 3-4 are outside the document's 1-2."),
])
def test_bad_usage_is_one_line(scans, args, expected):
    done = cli("ocr", scans / "two.pdf", *args)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(expected), done.stderr


@pytest.mark.parametrize("args", [
    ["ocr", "two.pdf", "--model", "tesseract", "--format", "txt"],
    ["ocr", "two.pdf", "--model", "tesseract", "--task", "fields", "--template", "invoice", "--format", "xlsx"],
    ["history", "--export", "1", "--format", "txt"],
    ["eval", ".", "--models", "tesseract"],
])
@pytest.mark.parametrize("under", [False, True])
def test_out_that_is_a_file_is_one_sentence_before_anything_is_read(scans, tmp_path, args, under):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    args = [scans / a if a in ("two.pdf", ".") else a for a in args]
    done = cli(*args, "--out", taken / "sub" if under else taken)
    assert (done.returncode, done.stderr) == (2, f"error: --out must be a folder, and {taken} is a file; give a "
                                                 "folder to write into.\n")
    assert taken.read_text() == "mine"


def test_one_bad_file_does_not_stop_the_others(scans, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    done = cli("ocr", tmp_path / "empty.png", scans / "mixed.png", "--model", "tesseract")
    assert done.returncode == 1
    assert "error: 'empty.png' is empty" in done.stderr
    assert cer("\n".join(MIXED), done.stdout) <= 0.02


def test_long_document_asks_for_a_range(tmp_path, config):
    import yaml
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["limits"]["max_pages"] = 2
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    blank = render_lines([], size=(100, 100))
    (tmp_path / "three.pdf").write_bytes(pdf_of_images([blank] * 3))
    done = cli("--config", small, "ocr", tmp_path / "three.pdf", "--model", "tesseract")
    assert done.returncode != 0
    assert "has 3 pages, over the limit of 2; choose a range of at most 2 pages (e.g. --pages 1-2)" in done.stderr
    done = cli("--config", small, "ocr", tmp_path / "three.pdf", "--model", "tesseract", "--pages", "2-3")
    assert done.returncode == 0, done.stderr
