"""The sandbox's mutable state: configuration, counters, limits, the fault dice.

One :class:`SandboxState` per app, shared by the server's threads; every change
happens under one lock, so counts stay exact under concurrent requests.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from backfill.sandbox import config as cfg


class SandboxState:
    """Counters and fault configuration of one running sandbox."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._initial = cfg.validate(initial or {})
        self._wake = threading.Event()
        self._config: cfg.SandboxConfig = self._initial
        self._reset_locked()

    # -- configuration

    @property
    def config(self) -> cfg.SandboxConfig:
        """The configuration in force (immutable; replaced as a whole)."""
        return self._config

    def configure(self, changes: Any) -> cfg.SandboxConfig:
        """Merge ``changes`` into the configuration (raises SandboxConfigError)."""
        with self._lock:
            new = cfg.merge(self._config, changes)
            if isinstance(changes, dict) and "seed" in changes:
                self._rng = random.Random(new.seed)
            for month in (changes or {}).get("fail_months") or {}:
                # A month (re)configured starts counting its failing requests afresh.
                for provider in ("gemini", "xai"):
                    self._fail_used.pop((month, provider), None)
            self._config = new
            return new

    def reset(self) -> None:
        """Back to the initial configuration, with every counter at zero.

        Requests sleeping in a timeout fault are woken up, so none outlives a test.
        """
        with self._lock:
            self._wake.set()
            self._wake = threading.Event()
            self._reset_locked()

    def _reset_locked(self) -> None:
        self._config = self._initial
        self._rng = random.Random(self._initial.seed)
        self._calls: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._by_status: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._by_month: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._answered: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._fail_used: Counter[tuple[str, str]] = Counter()
        # ISBNdb arrivals and admissions in the current wall-clock second, and the peak.
        self._arrivals = self._admitted = self._peak = 0
        self._arrival_second = self._admitted_second = 0
        self._isbndb_day = ""
        self._isbndb_day_used = 0
        # Open Library: admissions per User-Agent in the current second.
        self._ol_window: dict[str, tuple[int, int]] = {}
        self._gb_day = ""
        self._gb_keyless_used = 0

    # -- faults

    def roll(self, rates: cfg.ProviderRates, provider: str) -> bool:
        """True with the configured probability (seeded, so a run can be replayed)."""
        rate = float(getattr(rates, provider))
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choice(self, options: tuple[int, ...]) -> int:
        """A seeded choice among ``options``."""
        with self._lock:
            return self._rng.choice(options)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the sandbox is reset meanwhile."""
        if seconds > 0:
            self._wake.wait(seconds)

    def take_month_failure(self, month: str, provider: str) -> int | None:
        """The status to fail with if this is one of the month's first N requests."""
        with self._lock:
            spec = self._config.fail_months.get(month)
            budget = getattr(spec, provider, 0) if spec else 0
            if spec is None or self._fail_used[(month, provider)] >= budget:
                return None
            self._fail_used[(month, provider)] += 1
            return spec.status

    # -- rate windows on the API's clock

    def rate_second(self) -> int:
        """The API's current second for its rate window, after the network's jitter.

        Sleeps a random ``0..rate_jitter_ms`` first (the request is admitted and
        counted when it arrives), then reads the wall clock shifted by
        ``rate_clock_offset_seconds`` (the API's windows need not start when ours do).
        """
        config = self._config
        if config.rate_jitter_ms > 0:
            self.sleep(random.uniform(0.0, config.rate_jitter_ms / 1000))
        return math.floor(time.time() + config.rate_clock_offset_seconds)

    # -- ISBNdb limits

    def isbndb_arrival(self) -> None:
        """Count an ISBNdb request in its wall-clock second (for max_isbndb_per_second)."""
        second = int(time.time())
        with self._lock:
            if second != self._arrival_second:
                self._arrival_second, self._arrivals = second, 0
            self._arrivals += 1
            self._peak = max(self._peak, self._arrivals)

    def isbndb_admit(self) -> str | None:
        """Apply the daily quota, then the rate limit: None, "daily" or "rate".

        An admitted request counts against the day (which rolls over at UTC midnight).
        """
        config = self._config
        second = self.rate_second()
        with self._lock:
            today = datetime.now(UTC).date().isoformat()
            if today != self._isbndb_day:
                self._isbndb_day, self._isbndb_day_used = today, 0
            limit = config.isbndb_daily_limit
            if config.quota_exhausted.isbndb or (
                limit is not None and self._isbndb_day_used >= limit
            ):
                return "daily"
            if second != self._admitted_second:
                self._admitted_second, self._admitted = second, 0
            if self._admitted >= config.isbndb_rate_per_second:
                return "rate"
            self._admitted += 1
            self._isbndb_day_used += 1
            return None

    # -- Open Library and Google Books limits

    def openlibrary_admit(self, user_agent: str) -> bool:
        """Whether a request from ``user_agent`` fits its per-second rate.

        Open Library asks callers to name a contact in the User-Agent; such callers
        get ``openlibrary_rate_identified`` requests a second, the others (generic
        library agents included) ``openlibrary_rate_anonymous``. The budget is per
        User-Agent, the sandbox's stand-in for the real per-client limit.
        """
        identified = "@" in user_agent or "http" in user_agent.lower()
        config = self._config
        limit = (
            config.openlibrary_rate_identified if identified else config.openlibrary_rate_anonymous
        )
        second = self.rate_second()
        with self._lock:
            start, used = self._ol_window.get(user_agent, (second, 0))
            if start != second:
                used = 0
            if used >= limit:
                return False
            self._ol_window[user_agent] = (second, used + 1)
            return True

    def googlebooks_admit(self, keyless: bool) -> bool:
        """Whether the day's budget admits one more Google Books call.

        Keyless calls share ``googlebooks_keyless_daily_limit`` a day (UTC); a call
        with a key is not capped. ``quota_exhausted.googlebooks`` refuses every call.
        """
        config = self._config
        with self._lock:
            if config.quota_exhausted.googlebooks:
                return False
            if not keyless:
                return True
            today = datetime.now(UTC).date().isoformat()
            if today != self._gb_day:
                self._gb_day, self._gb_keyless_used = today, 0
            limit = config.googlebooks_keyless_daily_limit
            if limit is not None and self._gb_keyless_used >= limit:
                return False
            self._gb_keyless_used += 1
            return True

    # -- counting

    def count_month(self, month: str, provider: str) -> None:
        """One generate request for ``month`` (authenticated and well formed: it reached
        the model, whatever the model then answered)."""
        with self._lock:
            self._by_month[month][provider] += 1

    def count_answer(self, month: str, provider: str) -> None:
        """One complete list answered for ``month`` (a 200 that is not cut short):
        what a generator is paid for. "Asked once" is measured on this."""
        with self._lock:
            self._answered[month][provider] += 1

    def record(self, provider: str, endpoint: str, status: int) -> None:
        """One answered request."""
        with self._lock:
            self._calls[provider] += 1
            self._by_endpoint[f"{provider}:{endpoint}"] += 1
            self._by_status[provider][str(status)] += 1

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /_sandbox/stats`` reports them."""
        with self._lock:
            return {
                "calls": {p: self._calls[p] for p in cfg.PROVIDERS},
                "by_endpoint": dict(self._by_endpoint),
                "by_status": {p: dict(self._by_status[p]) for p in cfg.PROVIDERS},
                "by_month": {m: dict(c) for m, c in sorted(self._by_month.items())},
                "answered_by_month": {m: dict(c) for m, c in sorted(self._answered.items())},
                "max_isbndb_per_second": self._peak,
                "isbndb_daily_used": self._isbndb_day_used,
                "googlebooks_keyless_daily_used": self._gb_keyless_used,
            }
