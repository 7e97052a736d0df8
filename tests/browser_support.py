"""What the headless-Chromium tests share: the browser's flags and a running app server.

Uses the system Chromium (Debian: ``apt install chromium``) with the ``playwright`` Python package;
nothing downloads a browser. The flags keep Chromium off the network (the machine has none).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_REASON = "no chromium on PATH (Debian: apt-get install chromium)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(log_path: Path, *extra_args: str, start_timeout: float = 120.0):
    """``streamlit run app.py`` on a free localhost port; yields its URL and stops it afterwards.

    The server's output goes to ``log_path``; a server that does not come up fails the test with its log.
    """
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             *extra_args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.fail("the app did not start:\n" + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
