"""The API sandbox for the benchmarks: in a thread of this process, or as its own process.

The handle is the tests' ``Sandbox`` (``.url``, ``.configure``, ``.stats``,
``.reset``, ``.env()``); serving it is done here so the benchmarks do not
depend on pytest fixtures.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.sandbox_fixture import Sandbox, free_port, start_sandbox_process


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
    proc: subprocess.Popen[bytes] = start_sandbox_process(port, config, log_path)
    try:
        yield Sandbox(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
