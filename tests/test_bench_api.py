"""bench/api.py runs end to end with tiny settings and prints both of its tables (no timing
is checked here: the numbers are the benchmark's to report)."""

import subprocess
import sys

from tests.conftest import ROOT


def test_the_api_benchmark_runs_and_prints_its_tables():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "api.py"), "--documents", "2", "--pages", "1",
                           "--rounds", "1", "--latency", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for line in ("cli.py ocr, one call over all documents", "cli.py ocr, one call per document",
                 "API: all submitted at once", "API / one-call CLI pages/min, median of the rounds",
                 "POST /v1/ocr, txt answer", "added by the API", "added latency (median):"):
        assert line in out, out
