"""The API sandbox for the benchmarks: in a thread of this process, or as its own process,
and the ground-truth arithmetic the catalogue benchmarks grade a run with.

``Sandbox`` is a handle on a running sandbox (``.url``, ``.configure``, ``.stats``,
``.reset``, ``.truth``, ``.truth_isbns``, ``.env()``). It mirrors the tests' handle
but lives here: the benchmarks import nothing from ``tests/``, so they also run in a
checkout of an older commit (``bench.generate_once --before``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench._common import ROOT, SANDBOX_KEYS, subprocess_env

# Open Library is keyless: a contact in the User-Agent earns its 3 requests/s.
OPENLIBRARY_CONTACT = "bench@example.org"
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
    """A handle on a running sandbox: its URL and its ``/_sandbox/`` control routes."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}/_sandbox/{path}", timeout=30, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def configure(self, **config: Any) -> dict[str, Any]:
        """Merge ``config`` into the fault configuration; returns the config in force."""
        result: dict[str, Any] = self._call("POST", "config", json=config)
        return result

    def config(self) -> dict[str, Any]:
        """The fault configuration in force (which keys exist depends on the sandbox's age)."""
        result: dict[str, Any] = self._call("GET", "config")
        return result

    def stats(self) -> dict[str, Any]:
        """Counters: calls, by_endpoint, by_status, by_month (and, if this sandbox
        has it, answered_by_month), max_isbndb_per_second."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def reset(self) -> None:
        """Counters to zero, configuration back to the start-up one."""
        self._call("POST", "reset")

    def truth(self, year: int, month: int) -> dict[str, Any]:
        """The month's books as the sandbox knows them, ranked as the generators list them."""
        result: dict[str, Any] = self._call("GET", f"truth/{year:04d}-{month:02d}")
        return result

    def truth_isbns(self, start: str, end: str) -> dict[str, Any]:
        """Every ISBN the sandbox knows in months ``start``..``end`` (YYYY-MM) and whose it is."""
        result: dict[str, Any] = self._call("GET", "truth-isbns", params={"from": start, "to": end})
        return result

    def env(self) -> dict[str, str]:
        """Environment variables pointing a process (worker, this one) at this sandbox."""
        return {
            **dict.fromkeys(BASE_URLS, self.url),
            **SANDBOX_KEYS,
            "OPENLIBRARY_CONTACT": OPENLIBRARY_CONTACT,
        }


def error_rates(sandbox: Sandbox, rate: float) -> dict[str, float]:
    """``rate`` for every API this sandbox can fail (an older one knows fewer)."""
    return dict.fromkeys(sandbox.config()["error_rate"], rate)


@contextmanager
def sandbox_thread(config: dict[str, Any] | None = None) -> Iterator[Sandbox]:
    """The sandbox served by werkzeug (threaded) in a daemon thread of this process."""
    from backfill.sandbox.app import make_sandbox_server

    server = make_sandbox_server("127.0.0.1", 0, config)
    thread = threading.Thread(target=server.serve_forever, name="bench-sandbox", daemon=True)
    thread.start()
    handle = Sandbox(f"http://127.0.0.1:{server.port}")
    try:
        yield handle
    finally:
        handle.reset()  # wakes any request sleeping in a timeout fault
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def sandbox_process(
    config: dict[str, Any] | None = None, log_path: Path | None = None
) -> Iterator[Sandbox]:
    """``python -m backfill.sandbox`` as a separate process (so it does not share
    this process's GIL with the code being measured)."""
    port = free_port()
    # unlimited unless the benchmark sets a limit (the served default is ISBNdb's)
    config = {"isbndb_rate_per_second": 100000, "isbndb_daily_limit": None, **(config or {})}
    command = [sys.executable, "-m", "backfill.sandbox", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--config", json.dumps(config)]
    log = log_path.open("ab") if log_path else None
    try:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=subprocess_env(),
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log:
            log.close()  # the child holds its own copy
    handle = Sandbox(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sandbox process exited with {proc.returncode}")
            try:
                if requests.get(f"{handle.url}/_sandbox/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox not answering on port {port} after 20 s")
            time.sleep(0.1)
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- grading against the ground truth ----------------------------------------


def _listed(book: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """The answers of the generators that list ``book`` within their first ``batch_size``."""
    return [
        answer
        for provider, answer in book["answers"].items()
        if answer and book["rank"][provider] is not None and book["rank"][provider] < batch_size
    ]


def in_scope(truth: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """The month truth's books that either generator lists within its first ``batch_size``."""
    return [
        book
        for book in truth["books"]
        if any(rank is not None and rank < batch_size for rank in book["rank"].values())
    ]


def hallucinated(book: dict[str, Any], batch_size: int) -> bool:
    """Whether every generator listing ``book`` quotes an ISBN failing its checksum
    (the pipeline drops such a book, so it is not counted as findable)."""
    from backfill.dedupe import valid_isbn13

    listed = _listed(book, batch_size)
    return bool(listed) and all(
        answer.get("isbn13") and not valid_isbn13(str(answer["isbn13"])) for answer in listed
    )


def grade(
    sandbox: Sandbox,
    stored: dict[str, tuple[int | None, int | None]],
    months: list[tuple[int, int]],
    batch_size: int,
) -> dict[str, Any]:
    """Precision and recall of ``stored`` (ISBN-13 -> (found_year, found_month)).

    precision = stored ISBNs that are a findable book's own ISBN / stored;
    recall = those right ISBNs / the findable in-scope books of ``months``
    (hallucinated-only books left out), as tests/system/reliability/test_catalogue_quality.py.
    """
    first, last = (f"{y:04d}-{m:02d}" for y, m in (months[0], months[-1]))
    table = sandbox.truth_isbns(first, last)["isbns"]
    right = {isbn for isbn in stored if table.get(isbn, {}).get("right")}
    misfiled = [
        isbn
        for isbn in right
        if table[isbn]["month"] != f"{stored[isbn][0] or 0:04d}-{stored[isbn][1] or 0:02d}"
    ]
    roles: dict[str, int] = {}
    for isbn in set(stored) - right:
        role = str(table.get(isbn, {}).get("role", "unknown to the sandbox"))
        roles[role] = roles.get(role, 0) + 1
    findable: set[str] = set()
    for year, month in months:
        for book in in_scope(sandbox.truth(year, month), batch_size):
            if book["findable"] and not hallucinated(book, batch_size):
                findable.add(book["isbn13"])
    return {
        "stored": len(stored),
        "right": len(right),
        "wrong": len(stored) - len(right),
        "wrong_roles": roles,
        "misfiled": len(misfiled),
        "findable": len(findable),
        "found": len(findable & right),
        "precision": len(right) / len(stored) if stored else float("nan"),
        "recall": len(findable & right) / len(findable) if findable else float("nan"),
    }
