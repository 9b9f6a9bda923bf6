"""What every provider client shares: the data they return and one careful HTTP call.

Every request goes through :meth:`ProviderClient._send`, which first reserves
one unit in the global quota ledger (:func:`backfill.quota.reserve`), then sends
with a timeout, and maps transport failures to :class:`ProviderError`. So no
request is ever made without a reservation, and none can hang a worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from backfill import quota
from backfill.config import Settings, get_settings
from backfill.exceptions import ProviderError, ProviderRefused, QuotaExhausted

USER_AGENT = "backfill/0.1"


@dataclass
class BookCandidate:
    """One book as a generator proposed it (nothing verified yet)."""

    title: str
    authors: list[str]
    publisher: str | None
    publication_date: str | None
    isbn: str | None
    reason: str | None
    source: str


@dataclass
class Generation:
    """One generator's answer for a month."""

    provider: str
    books: list[BookCandidate]
    tokens_in: int
    tokens_out: int
    model: str
    prompt_version: str


class Generator(Protocol):
    """An LLM that lists a month's notable books."""

    name: str

    def generate(self, year: int, month: int, prompt_variant: str, batch_size: int) -> Generation:
        """Ask for up to ``batch_size`` books first published in ``year``-``month``."""
        ...


class ProviderClient:
    """Shared plumbing: a ``requests`` session, quota reservation, timeouts, status mapping.

    ``calls`` counts the HTTP requests this client actually sent (each one reserved
    in the ledger first), so the pipeline can account for them even after an error.
    """

    name: str = "provider"

    def __init__(self, settings: Settings | None = None, http: requests.Session | None = None):
        self.settings = settings or get_settings()
        self.http = http or requests.Session()
        self.http.headers.setdefault("User-Agent", USER_AGENT)
        self.calls = 0

    def close(self) -> None:
        """Release pooled connections."""
        self.http.close()

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Reserve quota, then make one request; transport failures become ProviderError."""
        quota.reserve(self.name, self.settings)
        self.calls += 1
        timeout = self.settings.http_timeout_seconds
        try:
            response = self.http.request(method, url, timeout=timeout, **kwargs)
        except requests.Timeout:
            quota.record_outcome(self.name, "timeout", self.settings)
            raise ProviderError(self.name, f"no answer within {timeout:g}s") from None
        except requests.RequestException as exc:
            quota.record_outcome(self.name, "network_error", self.settings)
            # The exception text can hold the URL but never a header, so no key leaks.
            raise ProviderError(self.name, f"request failed: {type(exc).__name__}") from None
        quota.record_outcome(self.name, self._outcome(response), self.settings)
        return response

    def _outcome(self, response: requests.Response) -> str:
        """How a request ended, as ``/metrics`` labels it."""
        status = response.status_code
        if status < 400:
            return "ok"
        if status == 404:
            return "not_found"
        if self._is_daily_quota_answer(response):
            return "quota_exhausted"
        if status == 429:
            return "rate_limited"
        if status in (401, 403):
            return "refused"
        return "server_error" if status >= 500 else "client_error"

    def _error_text(self, response: requests.Response) -> str:
        """A short description of an error answer (status plus the API's message)."""
        message = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                message = str(error.get("message") or error.get("status") or "")
            elif error:
                message = str(error)
            message = message or str(body.get("message") or body.get("errorMessage") or "")
        if not message:
            message = response.text[:200]
        return f"HTTP {response.status_code}: {message.strip()[:300]}"

    def _raise_for_status(self, response: requests.Response) -> None:
        """Map an error status: 429 day quota -> QuotaExhausted, 5xx -> ProviderError,
        other 4xx (bad key, bad request) -> ProviderRefused."""
        status = response.status_code
        if status < 400:
            return
        text = self._error_text(response)
        if self._is_daily_quota_answer(response):
            resets_at = quota.mark_exhausted(self.name, self.settings)
            raise QuotaExhausted(self.name, resets_at, text)
        if status == 429 or status >= 500:
            raise ProviderError(self.name, text)
        raise ProviderRefused(self.name, text)

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        """True when the API says the day's quota is spent (provider specific)."""
        return False

    def _json(self, response: requests.Response) -> Any:
        """The JSON body of a successful answer; anything else is a transient error."""
        self._raise_for_status(response)
        try:
            return response.json()
        except ValueError:
            raise ProviderError(self.name, "malformed answer: body is not JSON") from None

    def _key(self, value: Any, variable: str) -> str:
        """The API key's plain value; a missing key is a permanent refusal (no call made)."""
        if value is None:
            raise ProviderRefused(self.name, f"no API key configured ({variable})")
        return str(value.get_secret_value())


def mentions_daily_quota(response: requests.Response, words: tuple[str, ...]) -> bool:
    """Whether an error body mentions one of ``words`` (lower case), e.g. 'per day'."""
    try:
        text = json.dumps(response.json()).lower()
    except ValueError:
        text = response.text.lower()
    return any(word in text for word in words)
