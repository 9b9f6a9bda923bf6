"""What every provider client shares: the data they return and one careful HTTP call.

Every request goes through :meth:`ProviderClient._send`, which first reserves
one unit in the global quota ledger (:func:`backfill.quota.reserve`), then sends
with a timeout. :meth:`ProviderClient._request_json` wraps it in the one retry
loop of the package: a 5xx, a timeout, a dropped connection, a rate-limit 429 or
a cut-short 200 body is tried again inside the attempt, up to
``PROVIDER_MAX_TRIES`` times, with exponential backoff and full jitter. Each try
is a new reservation, and urllib3's own retries are switched off, so the ledger
always equals the requests that reached the wire.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import importlib.metadata
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from backfill import quota
from backfill.config import Settings, get_settings
from backfill.exceptions import ProviderError, ProviderRefused, QuotaExhausted

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return importlib.metadata.version("backfill")
    except importlib.metadata.PackageNotFoundError:  # running from a bare checkout
        return "0.1"


USER_AGENT = f"backfill/{_version()}"


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


@dataclass(frozen=True)
class Hit:
    """One title-search (or ISBN) hit from any source, in one shape."""

    source: str  # 'openlibrary' | 'googlebooks' | 'isbndb'
    title: str  # full title, subtitle included ("Title: Subtitle")
    authors: tuple[str, ...]
    date: str | None  # the edition's publication date text; OL work: first_publish_year
    isbns: tuple[str, ...]  # valid ISBN-13s, de-duplicated, in the source's order
    edition_level: bool  # True: the ISBNs are this very edition's; False: an OL work's union
    binding: str | None  # ISBNdb binding, GB printType or "ebook", None if unknown
    language: str | None
    key: str | None  # OL work key, GB volume id, or the ISBN-13 for ISBNdb
    record: dict[str, Any]  # the source's record, bounded, for evidence


class Generator(Protocol):
    """An LLM that lists a month's notable books."""

    name: str

    def generate(self, year: int, month: int, prompt_variant: str, batch_size: int) -> Generation:
        """Ask for up to ``batch_size`` books first published in ``year``-``month``."""
        ...


class _Retryable(Exception):
    """One try failed in a way the next try may not: worth another reservation."""

    def __init__(self, text: str, response: requests.Response | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.response = response


class ProviderClient:
    """Shared plumbing: a ``requests`` session, quota reservation, timeouts, retries.

    ``calls`` counts the HTTP requests this client actually sent (each one reserved
    in the ledger first, retries included), so the pipeline can account for them
    even after an error.
    """

    name: str = "provider"
    # A 429 is waited out at least this long: the API's rate window (a shorter wait
    # meets the same full window again and wastes a reservation).
    rate_limit_min_wait: float = 0.0

    def __init__(self, settings: Settings | None = None, http: requests.Session | None = None):
        self.settings = settings or get_settings()
        self.http = http or requests.Session()
        # No retry layer below the ledger: urllib3 must never re-send on its own,
        # or the API would see requests nobody reserved.
        for prefix in ("http://", "https://"):
            self.http.mount(prefix, HTTPAdapter(max_retries=0))
        agent = str(self.http.headers.get("User-Agent") or "")
        if not agent or agent.startswith("python-requests"):  # refused by some APIs
            self.http.headers["User-Agent"] = self.user_agent()
        self.calls = 0
        # The request in flight is the probe of a day marked spent (quota.Grant.probe).
        self._probing = False

    def user_agent(self) -> str:
        """The User-Agent this client sends (one that names the service)."""
        return USER_AGENT

    def close(self) -> None:
        """Release pooled connections."""
        self.http.close()

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Reserve quota, then make one request; transport failures become ProviderError."""
        self._probing = quota.reserve(self.name, self.settings).probe
        self.calls += 1
        timeout = self.settings.http_timeout_seconds
        # Per request too: a session shared between clients keeps each one's agent.
        kwargs["headers"] = {"User-Agent": self.user_agent(), **(kwargs.get("headers") or {})}
        try:
            # A followed redirect would be a second request nobody reserved.
            return self.http.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            quota.record_outcome(self.name, "timeout", self.settings)
            raise ProviderError(self.name, f"no answer within {timeout:g}s") from None
        except requests.RequestException as exc:
            quota.record_outcome(self.name, "network_error", self.settings)
            # The exception text can hold the URL but never a header, so no key leaks.
            raise ProviderError(self.name, f"request failed: {type(exc).__name__}") from None

    def _request_json(
        self, method: str, url: str, *, not_found: bool = False, **kwargs: Any
    ) -> Any:
        """One request with in-attempt retries; returns the answer's JSON body.

        ``not_found``: a 404 returns None instead of being a refusal. The day's
        quota answer raises :class:`QuotaExhausted` at once; 401, 403 and other
        4xx raise :class:`ProviderRefused`; a retryable failure that outlasts
        ``PROVIDER_MAX_TRIES`` raises :class:`ProviderError` with its text.
        """
        tries = self.settings.provider_max_tries
        last: _Retryable | None = None
        for attempt in range(1, tries + 1):
            if last is not None:
                delay = self._retry_delay(attempt - 1, last)
                log.info(
                    "%s: %s; try %d of %d in %.2fs", self.name, last.text, attempt, tries, delay
                )
                time.sleep(delay)
            try:
                return self._try_once(method, url, not_found, kwargs)
            except _Retryable as exc:
                last = exc
        assert last is not None
        self._tries_spent(last)
        raise ProviderError(
            self.name, f"{last.text} after {tries} {'try' if tries == 1 else 'tries'}"
        )

    def _try_once(self, method: str, url: str, not_found: bool, kwargs: dict[str, Any]) -> Any:
        try:
            response = self._send(method, url, **kwargs)
        except ProviderRefused:
            raise
        except ProviderError as exc:  # a timeout or a lost connection
            raise _Retryable(str(exc).removeprefix(f"{self.name}: ")) from None
        status = response.status_code
        if self._probing and (status < 300 or (status == 404 and not_found)):
            quota.clear_exhausted(self.name, self.settings)  # the day is not spent after all
        if status == 404 and not_found:
            quota.record_outcome(self.name, "not_found", self.settings)
            return None
        if 300 <= status < 400:
            quota.record_outcome(self.name, "client_error", self.settings)
            raise ProviderRefused(self.name, f"HTTP {status}: redirected; check the base URL")
        if status < 400:
            try:
                data = response.json()
            except ValueError:  # a 200 cut short on the way: the next try may be whole
                quota.record_outcome(self.name, "malformed", self.settings)
                raise _Retryable("malformed answer: body is not JSON") from None
            quota.record_outcome(self.name, "ok", self.settings)
            return data
        quota.record_outcome(self.name, self._outcome(response), self.settings)
        text = self._error_text(response)
        if self._is_daily_quota_answer(response) or (
            self._probing and self._is_rate_limit_answer(response)
        ):
            # A probe refused for its rate is the day still spent: nothing else is sent.
            resets_at = quota.mark_exhausted(self.name, self.settings)
            raise QuotaExhausted(self.name, resets_at, text)
        if status >= 500 or self._is_rate_limit_answer(response):
            raise _Retryable(text, response)
        raise ProviderRefused(self.name, text)

    def _tries_spent(self, last: _Retryable) -> None:
        """Called when every try failed, before the ProviderError (provider specific)."""

    def _retry_delay(self, retry: int, failure: _Retryable) -> float:
        """Seconds before retry number ``retry`` (1 = the first): the API's own hint on
        a 429/503, else full jitter on an exponential backoff, both capped."""
        cap = self.settings.provider_retry_backoff_max_seconds
        response = failure.response
        hinted = self._retry_after(response) if response is not None else None
        if hinted is not None:
            delay = min(hinted, cap)
        else:
            ceiling = self.settings.provider_retry_backoff_seconds * 2 ** (retry - 1)
            delay = random.uniform(0.0, min(cap, ceiling))
        if response is not None and self._is_rate_limit_answer(response):
            delay = max(delay, self.rate_limit_min_wait)
        return delay

    def _retry_after(self, response: requests.Response) -> float | None:
        """The ``Retry-After`` of a 429 or 503 in seconds (delta or HTTP date), if any."""
        value = response.headers.get("Retry-After")
        if response.status_code not in (429, 503) or not value:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)

    def _outcome(self, response: requests.Response) -> str:
        """How an error answer ended, as ``/metrics`` labels it."""
        status = response.status_code
        if status == 404:
            return "not_found"
        if self._is_daily_quota_answer(response):
            return "quota_exhausted"
        if self._is_rate_limit_answer(response):
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

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        """True when the API says the day's quota is spent (provider specific)."""
        return False

    def _is_rate_limit_answer(self, response: requests.Response) -> bool:
        """True for a rate-limit refusal, retried after a wait (provider specific)."""
        return response.status_code == 429

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
