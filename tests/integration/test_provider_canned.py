"""A tiny real HTTP server answering canned bodies, for answers the sandbox cannot give.

The odd answer shapes (a Gemini ``candidates`` object, an xAI ``message`` string,
...) and the documented Open Library / Google Books samples are served over real
HTTP by werkzeug in a thread, so the clients' whole path (session, adapter,
ledger, retries, parsing) runs as in production. Not a mock: only the answer
text is chosen by the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from sqlalchemy import text
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from backfill.db import get_engine


@dataclass
class Canned:
    """One answer: status, body (JSON-encoded unless bytes/str) and headers."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        raw = self.body if isinstance(self.body, bytes | str) else json.dumps(self.body)
        return Response(raw, status=self.status, headers=self.headers, mimetype="application/json")


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    args: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class CannedServer:
    """Serves the queued answers in order (the last one again once the queue is empty)."""

    def __init__(self) -> None:
        self.answers: list[Canned] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def queue(self, *answers: Canned) -> CannedServer:
        """Replace the queued answers."""
        with self._lock:
            self.answers = list(answers)
        return self

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.seen.append(
                Seen(
                    request.method,
                    request.path,
                    request.args.to_dict(flat=False),
                    dict(request.headers),
                    request.get_data(),
                )
            )
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer.response()(environ, start_response)


def ledger_calls(url: str) -> dict[str, int]:
    """Calls reserved today per provider in the quota ledger (0 for one never used)."""
    from backfill.constants import PROVIDERS

    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text("SELECT provider, sum(calls) FROM quota_usage WHERE \"window\" = 'day' GROUP BY 1")
        ).all()
    return {p: 0 for p in PROVIDERS} | {str(p): int(n) for p, n in rows}


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    """A running CannedServer, stopped after the test."""
    server = CannedServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(5)


def test_the_canned_server_answers_in_order_then_repeats_the_last(canned: CannedServer) -> None:
    canned.queue(Canned({"n": 1}), Canned("cut", status=503))
    got = [requests.get(f"{canned.url}/x?a=1", timeout=5) for _ in range(3)]
    assert [(r.status_code, r.text) for r in got] == [(200, '{"n": 1}'), (503, "cut"), (503, "cut")]
    assert [s.args for s in canned.seen] == [{"a": ["1"]}] * 3
