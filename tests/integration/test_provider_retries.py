"""In-attempt retries, over real HTTP: every try is reserved, nothing retries below the ledger.

The sandbox injects 5xx, timeouts, rate 429s and cut-short bodies; a canned
server gives the answers the sandbox has no knob for (Retry-After, a redirect, a
422) and a bare socket drops connections. In every case the ledger holds exactly
the requests the server received.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import text
from urllib3.util.retry import Retry

from backfill.config import Settings, load_settings
from backfill.db import get_engine
from backfill.exceptions import ProviderError, ProviderRefused
from backfill.providers import GeminiClient, IsbndbClient, XaiClient
from backfill.providers.base import ProviderClient, _Retryable
from tests.integration.test_provider_canned import Canned, CannedServer, canned, ledger_calls  # noqa: F401
from tests.support.sandbox_fixture import Sandbox

FAST = {
    "isbndb_rate_per_second": 1000,
    "gemini_rate_per_minute": 0,
    "xai_rate_per_minute": 0,
    "http_timeout_seconds": 3.0,
    "provider_retry_backoff_seconds": 0.01,
    "provider_retry_backoff_max_seconds": 0.05,
}
GOOD_XAI = {
    "choices": [{"message": {"content": '{"books": [{"title": "Dune", "authors": ["F"]}]}'}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}


def sandbox_settings(sandbox: Sandbox, url: str, **overrides: Any) -> Settings:
    """Every client pointed at the sandbox, generous rates, fast retries."""
    return load_settings(database_url=url, **{**sandbox.settings_overrides(), **FAST, **overrides})


def canned_settings(server: CannedServer, url: str, **overrides: Any) -> Settings:
    """xAI and Gemini pointed at the canned server."""
    return load_settings(
        database_url=url,
        xai_base_url=server.url,
        xai_api_key="test-xai-key",
        gemini_base_url=server.url,
        gemini_api_key="test-gemini-key",
        **{**FAST, **overrides},
    )


def outcomes(url: str, provider: str) -> dict[str, int]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text("SELECT outcome, calls FROM api_call_outcomes WHERE provider = :p"),
            {"p": provider},
        ).all()
    return {str(o): int(n) for o, n in rows}


def test_no_retry_layer_below_the_ledger(committed_db: str) -> None:
    session = requests.Session()
    session.mount("https://", HTTPAdapter(max_retries=Retry(total=5)))  # a caller's adapter
    client = XaiClient(load_settings(database_url=committed_db), http=session)
    for url in ("http://example.org/", "https://example.org/"):
        adapter = client.http.get_adapter(url)
        assert isinstance(adapter, HTTPAdapter)
        assert adapter.max_retries.total == 0 and not adapter.max_retries.read
    assert str(client.http.headers["User-Agent"]).startswith("backfill/")


def test_a_failure_then_success_inside_one_attempt(sandbox: Sandbox, committed_db: str) -> None:
    # the month's first two generate requests answer 503, the third succeeds
    sandbox.configure(fail_months={"2024-05": {"gemini": 2, "status": 503}})
    client = GeminiClient(sandbox_settings(sandbox, committed_db))
    generation = client.generate(2024, 5, "contemporary-notable", 5)
    assert generation.books
    assert sandbox.stats()["by_status"]["gemini"] == {"503": 2, "200": 1}
    assert ledger_calls(committed_db)["gemini"] == client.calls == 3


def test_the_ledger_equals_the_requests_received_under_faults(
    sandbox: Sandbox, committed_db: str
) -> None:
    rates = {"gemini": 0.25, "xai": 0.25, "isbndb": 0.25}
    sandbox.configure(
        seed=7,
        error_rate=rates,
        rate_limit_rate=rates,
        timeout_rate={"gemini": 0.1, "xai": 0.1, "isbndb": 0.1},
        malformed_rate={"isbndb": 0.3},  # a 200 body cut short: retried
        timeout_seconds=0.6,
    )
    settings = sandbox_settings(sandbox, committed_db, http_timeout_seconds=0.3)
    isbn = next(b["isbn13"] for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    clients: list[ProviderClient] = [GeminiClient(settings), XaiClient(settings)]
    isbndb = IsbndbClient(settings)
    failures = 0
    for _ in range(3):
        for generator in clients:
            try:
                generator.generate(2024, 5, "contemporary-notable", 5)  # type: ignore[attr-defined]
            except ProviderError:
                failures += 1
    for _ in range(8):
        try:
            isbndb.book(isbn)
        except ProviderError:
            failures += 1
    time.sleep(0.8)  # let the sandbox finish (and count) the requests that timed out
    served = sandbox.stats()
    ledger = ledger_calls(committed_db)
    sent = {c.name: c.calls for c in [*clients, isbndb]}
    assert {p: ledger[p] for p in sent} == {p: served["calls"][p] for p in sent} == sent
    assert sum(sent.values()) > 14  # faults were met and retried, not given up at once
    assert failures < 14


def test_a_dropped_connection_is_retried_and_each_try_is_one_request(
    committed_db: str,
) -> None:
    accepted = _dropping_server()
    settings = load_settings(
        database_url=committed_db, xai_base_url=accepted.url, xai_api_key="k", **FAST
    )
    client = XaiClient(settings)
    with pytest.raises(ProviderError, match="request failed: ConnectionError after 4 tries"):
        client.generate(2024, 5, "baseline", 5)
    accepted.stop()
    assert accepted.count == ledger_calls(committed_db)["xai"] == client.calls == 4
    assert outcomes(committed_db, "xai") == {"network_error": 4}


def test_a_cut_short_body_is_retried_and_counted_as_malformed(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned('{"choices": [{"message": '), Canned(GOOD_XAI))
    client = XaiClient(canned_settings(canned, committed_db))
    assert [b.title for b in client.generate(2024, 5, "baseline", 5).books] == ["Dune"]
    assert len(canned.seen) == ledger_calls(committed_db)["xai"] == client.calls == 2
    assert outcomes(committed_db, "xai") == {"malformed": 1, "ok": 1}


def test_retry_after_is_honoured_and_capped(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    limited = {"code": "Some resource has been exhausted", "error": "Too many requests"}
    settings = canned_settings(canned, committed_db, provider_retry_backoff_max_seconds=2.5)
    canned.queue(Canned(limited, 429, {"Retry-After": "1"}), Canned(GOOD_XAI))
    started = time.monotonic()
    XaiClient(settings).generate(2024, 5, "baseline", 5)
    assert 1.0 <= time.monotonic() - started < 2.0  # the server's 1 s, not the 2.5 s cap
    canned.queue(Canned(limited, 429, {"Retry-After": "3600"}), Canned(GOOD_XAI))
    started = time.monotonic()
    XaiClient(settings).generate(2024, 5, "baseline", 5)
    assert 2.5 <= time.monotonic() - started < 3.5  # capped at the backoff maximum
    assert ledger_calls(committed_db)["xai"] == len(canned.seen) == 4


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (422, {"code": "bad", "error": "messages: required"}, "HTTP 422"),
        (401, {"code": "unauthenticated", "error": "bad token"}, "HTTP 401"),
        (302, {}, "HTTP 302: redirected"),  # a redirect would be a request nobody reserved
    ],
)
def test_a_refusal_is_not_retried(
    status: int,
    body: dict[str, str],
    message: str,
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    headers = {"Location": canned.url + "/elsewhere"} if status == 302 else {}
    canned.queue(Canned(body, status, headers))
    client = XaiClient(canned_settings(canned, committed_db))
    with pytest.raises(ProviderRefused, match=message):
        client.generate(2024, 5, "baseline", 5)
    assert len(canned.seen) == ledger_calls(committed_db)["xai"] == client.calls == 1


def test_one_try_means_no_retry(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned({"error": "down"}, 503), Canned(GOOD_XAI))
    client = XaiClient(canned_settings(canned, committed_db, provider_max_tries=1))
    with pytest.raises(ProviderError, match=r"HTTP 503: down after 1 try$"):
        client.generate(2024, 5, "baseline", 5)
    assert len(canned.seen) == client.calls == 1


def test_backoff_is_full_jitter_under_an_exponential_ceiling(committed_db: str) -> None:
    settings = load_settings(
        database_url=committed_db,
        provider_retry_backoff_seconds=1.0,
        provider_retry_backoff_max_seconds=5.0,
    )
    client = XaiClient(settings)
    failure = _Retryable("HTTP 503")
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [client._retry_delay(retry, failure) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


class _Dropper:
    """A TCP server that accepts each connection and closes it without a word."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.count = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.recv(65536)  # the whole request arrived: the API "received" it
            conn.close()

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(2)


def _dropping_server() -> _Dropper:
    return _Dropper()


@pytest.fixture(autouse=True)
def _no_stray_waits() -> Iterator[None]:
    """Fail loudly if a test here starts sleeping for production-length backoffs."""
    started = time.monotonic()
    yield
    assert time.monotonic() - started < 30
