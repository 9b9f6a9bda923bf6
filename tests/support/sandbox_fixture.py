"""The ``sandbox`` fixture: the API emulator over real HTTP, for any test module.

Registered in tests/conftest.py (``pytest_plugins``). One server per test run is
started in a background thread (werkzeug, threaded) on a free port; each test that
asks for ``sandbox`` gets it reset (counters zero, default config) before and after.

``start_sandbox_process(port)`` runs it as a separate ``python -m backfill.sandbox``
process instead, for tests that need it to outlive or be killed apart from pytest.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]  # tests/support/ -> the checkout
KEYS = {
    "GEMINI_API_KEY": "sandbox-gemini-key",
    "XAI_API_KEY": "sandbox-xai-key",
    "ISBNDB_API_KEY": "sandbox-isbndb-key",
}
# Open Library is keyless: a contact in the User-Agent earns its 3 requests/s.
OPENLIBRARY_CONTACT = "ops@example.org"
# Every setting naming an API's base URL: all point at the sandbox.
BASE_URLS = (
    "GEMINI_BASE_URL",
    "XAI_BASE_URL",
    "ISBNDB_BASE_URL",
    "OPENLIBRARY_BASE_URL",
    "GOOGLE_BOOKS_BASE_URL",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sandbox:
    """A handle on a running sandbox: its URL and its control routes."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}/_sandbox/{path}", timeout=10, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"sandbox {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def configure(self, **config: Any) -> dict[str, Any]:
        """Merge ``config`` into the fault configuration; returns the config in force."""
        result: dict[str, Any] = self._call("POST", "config", json=config)
        return result

    def stats(self) -> dict[str, Any]:
        """Counters: calls, by_endpoint, by_status, by_month, max_isbndb_per_second."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def reset(self) -> None:
        """Counters to zero, configuration back to the start-up one."""
        self._call("POST", "reset")

    def truth(self, year: int, month: int) -> dict[str, Any]:
        """The month's books as the sandbox knows them (see catalogue.MonthCatalogue.truth)."""
        result: dict[str, Any] = self._call("GET", f"truth/{year:04d}-{month:02d}")
        return result

    def truth_isbns(self, start: str, end: str | None = None) -> dict[str, Any]:
        """Every ISBN the sandbox knows in months ``start``..``end`` (YYYY-MM) and whose
        it is (see backfill.sandbox.grading): ``{"from", "to", "isbns", "books"}``."""
        params = {"from": start, "to": end or start}
        result: dict[str, Any] = self._call("GET", "truth-isbns", params=params)
        return result

    def env(self) -> dict[str, str]:
        """Environment variables pointing a subprocess (worker, CLI, web) at this sandbox.

        No Google Books key: keyless calls are what the product makes by default
        (the sandbox caps them per day like Google does).
        """
        return {
            **dict.fromkeys(BASE_URLS, self.url),
            **KEYS,
            "OPENLIBRARY_CONTACT": OPENLIBRARY_CONTACT,
        }

    def settings_overrides(self) -> dict[str, str]:
        """The same as keyword arguments for ``backfill.config.load_settings(**...)``."""
        return {name.lower(): value for name, value in self.env().items()}


class _ServerThread:
    """The sandbox app served by werkzeug in a daemon thread."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from backfill.sandbox.app import make_sandbox_server

        self.server = make_sandbox_server("127.0.0.1", 0, config)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="backfill-sandbox", daemon=True
        )
        self.url = f"http://127.0.0.1:{self.server.port}"

    def start(self) -> _ServerThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    """One sandbox for the whole run (use ``sandbox`` in tests: it resets it)."""
    # Like ISBNdb's (which the in-thread sandbox does not limit unless told),
    # Open Library's rate is lifted for the suite, whose settings send fast; the
    # tests of the rate itself, and the end-to-end runs, set the real 3/s and 1/s.
    server = _ServerThread(
        {"openlibrary_rate_identified": 1000, "openlibrary_rate_anonymous": 1000}
    ).start()
    handle = Sandbox(server.url)
    try:
        yield handle
    finally:
        handle.reset()  # wakes any request still sleeping in a timeout fault
        server.stop()


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Iterator[Sandbox]:
    """The running sandbox, reset before and after the test."""
    sandbox_server.reset()
    yield sandbox_server
    sandbox_server.reset()


def start_sandbox_process(
    port: int,
    config: dict[str, Any] | None = None,
    log_path: Path | None = None,
    timeout: float = 20.0,
) -> subprocess.Popen[bytes]:
    """Start ``python -m backfill.sandbox --port N`` and wait until it answers.

    The caller stops it (``proc.terminate(); proc.wait()``). Output goes to
    ``log_path`` if given, else nowhere.
    """
    command = [sys.executable, "-m", "backfill.sandbox", "--host", "127.0.0.1", "--port", str(port)]
    if config:
        command += ["--config", json.dumps(config)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]  # the child holds its own copy
    url = f"http://127.0.0.1:{port}/_sandbox/health"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox process exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"sandbox process not answering on port {port} after {timeout:g}s")
